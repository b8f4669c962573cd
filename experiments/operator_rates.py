"""How often each variation operator yields a usable child, printed as a table.

For every operator in :data:`personaevo.operators.MUTATIONS` and ``CROSSOVERS`` (and the
rate-weighted :func:`~personaevo.operators.mutate` mix), ``N`` seeded applications on the
seed programs in ``generators/`` (cycling through them; crossovers through the ordered
pairs of distinct seeds, two children each). Columns:

* ``ok / contract / syntax / no-op / no-site / error``: share of children by outcome;
* ``runs``: share of ok children that, executed in-process on the space (default
  ``customer_support``) with ``n`` personas (default 50) and ``default_rng(0)``, return
  a list without raising within the time limit (``timeouts`` counts those cut off);
* ``valid/n``: mean share of the ``n`` requested personas that come back valid
  (:func:`personaevo.check_personas`), over the children that run.

In-process ``exec`` is for this measurement only: evolved programs run in the sandbox.

Run: ``python experiments/operator_rates.py`` (``--n 200 --space customer_support``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from personaevo import check_personas, load_space
from personaevo.operators import (
    CROSSOVERS,
    DEFAULT_MUTATIONS,
    MUTATIONS,
    VariationResult,
    mutate,
)
from personaevo.spaces import TraitSpace

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("ok", "contract", "syntax", "no-op", "no-site", "error")


def seed_programs() -> dict[str, str]:
    """The seed generator programs by name."""
    return {
        p.stem: p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "generators").glob("*.py"))
        if not p.name.startswith("_")
    }


class _TimeoutError(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _TimeoutError


def run_child(
    source: str, space: TraitSpace, n: int, timeout: float = 2.0
) -> tuple[Any, str | None]:
    """Execute a child in this process; ``(output, None)`` or ``(None, why)``."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        namespace: dict[str, Any] = {"__name__": "child"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(source, "<child>", "exec"), namespace)
            out = namespace["generate"](space, n, np.random.default_rng(0))
        return (out, None) if isinstance(out, list) else (None, f"returned {type(out)}")
    except _TimeoutError:
        return None, "timeout"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def applications(name: str, n: int, seed: int) -> Iterator[VariationResult]:
    """``n`` seeded applications of one operator (``"mutate"``: the default mix)."""
    programs = list(seed_programs().values())
    pairs = [(a, b) for a in programs for b in programs if a is not b]
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        if name == "mutate":
            yield mutate(programs[i % len(programs)], rng)
        elif name in MUTATIONS:
            yield MUTATIONS[name](programs[i % len(programs)], rng)
        else:
            a, b = pairs[i % len(pairs)]
            yield from CROSSOVERS[name](a, b, rng)


def measure(name: str, n: int, space: TraitSpace, personas: int, seed: int) -> dict[str, Any]:
    """Outcome shares, run share and speed for one operator."""
    counts: Counter[str] = Counter()
    runs = timeouts = 0
    validity: list[float] = []
    op_seconds = 0.0
    start = time.perf_counter()
    results = applications(name, n, seed)
    while True:
        t0 = time.perf_counter()
        result = next(results, None)
        op_seconds += time.perf_counter() - t0
        if result is None:
            break
        counts[result.failure or "ok"] += 1
        if not result.ok:
            continue
        assert result.source is not None
        out, why = run_child(result.source, space, personas)
        if why is None:
            runs += 1
            checked = check_personas([p for p in out if isinstance(p, dict)], space)
            validity.append(min(len(checked.valid), personas) / personas)
        timeouts += why == "timeout"
    total = sum(counts.values())
    return {
        "operator": name,
        "children": total,
        **{k: counts[k] / total for k in OUTCOMES},
        "other": sum(v for k, v in counts.items() if k not in OUTCOMES) / total,
        "runs": runs / counts["ok"] if counts["ok"] else float("nan"),
        "timeouts": timeouts,
        "valid/n": float(np.mean(validity)) if validity else float("nan"),
        "ms/op": 1000 * op_seconds / n,
        "seconds": time.perf_counter() - start,
    }


def table(rows: list[dict[str, Any]], out: Callable[[str], None] = print) -> None:
    """Print rows as a fixed-width text table."""
    cols = ["operator", "children", *OUTCOMES, "runs", "timeouts", "valid/n", "ms/op"]
    widths = {c: max(len(c), 8) for c in cols}
    widths["operator"] = max(len(r["operator"]) for r in rows) + 1
    out(" ".join(c.rjust(widths[c]) if c != "operator" else c.ljust(widths[c]) for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            if c == "operator":
                cells.append(str(v).ljust(widths[c]))
            elif isinstance(v, int):
                cells.append(str(v).rjust(widths[c]))
            elif c == "ms/op":
                cells.append(f"{v:.1f}".rjust(widths[c]))
            else:
                cells.append(f"{100 * v:.1f}%".rjust(widths[c]))
        out(" ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="applications per operator")
    parser.add_argument("--space", default="customer_support")
    parser.add_argument("--personas", type=int, default=50, help="n passed to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="operator names to measure")
    args = parser.parse_args(argv)
    space = load_space(args.space)
    names = args.only or [*MUTATIONS, "mutate", *CROSSOVERS]
    rates = ", ".join(f"{op.name}={rate}" for op, rate in DEFAULT_MUTATIONS)
    print(f"space={args.space} n={args.personas} applications/operator={args.n} seed={args.seed}")
    print(f"default mutation rates: {rates}")
    rows = []
    for name in names:
        rows.append(measure(name, args.n, space, args.personas, args.seed))
        print(f"  {name}: {rows[-1]['seconds']:.1f}s", file=sys.stderr)
    table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
