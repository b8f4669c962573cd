"""Time per child of each AST variation operator: the reference path against the cached one.

The *reference* path (``personaevo.operators.analysis.reference_mode``) is the operators
as they were before the per-source analysis cache: every call parses its parents, runs
the name analysis (:func:`~personaevo.operators.scope.function_sites`, statement facts and
shapes) from scratch and grafts with :func:`copy.deepcopy`. The *cached* path keeps that
analysis per source text (:class:`~personaevo.operators.analysis.Parsed`) and copies
nodes with :func:`~personaevo.operators.analysis.fast_copy`. Both run the same calls in
one process, and the script checks that every result (source, failure, detail) and every
random draw is identical before printing a figure.

Programs: the seed generators plus ``--children`` second-generation programs made from
them. Each operator is applied ``--reuse`` times to each parent (different seeds), as
the evolution loop varies a parent several times while it survives:

* **ms/child** = wall time of all calls / number of children asked for (a crossover
  call asks for two), median of ``--repeats`` runs;
* **cold**: the cache is emptied before every call (a parent varied once: the cost of
  filling the cache included), to show the worst case.

Then a **loop workload**: the evolution loop's variation without evaluation. ``--islands``
islands of ``--population`` programs (seed generators first) each make ``--population``
children per generation for ``--generations`` generations, by crossover with probability
0.3 (the default ``crossover_rate``) and otherwise by mutation, through
:func:`~personaevo.operators.mutate` and :func:`~personaevo.operators.crossover` on one
seeded generator, as ``Evolution._children`` does; each island then keeps a seeded random
``--population`` of parents and ok children (standing in for NSGA-II selection). Figure:
wall time of all variation calls / children asked for, both paths on the same sequence.

Run: ``python experiments/bench_operators.py`` (about two minutes on 2 cores; ``--quick``
for fewer programs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from personaevo.operators import CROSSOVERS, MUTATIONS, crossover, mutate
from personaevo.operators.analysis import clear_cache, reference_mode

GENERATORS = Path(__file__).resolve().parents[1] / "generators"


def programs(children: int) -> list[str]:
    seeds = [
        p.read_text(encoding="utf-8")
        for p in sorted(GENERATORS.glob("*.py"))
        if not p.name.startswith("_")
    ]
    rng = np.random.default_rng(0)
    extra: list[str] = []
    with reference_mode():
        k = 0
        while len(extra) < children and k < 20 * children:
            a, b = seeds[k % len(seeds)], seeds[(3 * k + 1) % len(seeds)]
            results = [mutate(a, rng)] if k % 2 else list(crossover(a, b, rng))
            extra += [r.source for r in results if r.source is not None]
            k += 1
    return seeds + extra[:children]


Calls = list[tuple[Callable[[], object], int]]


def calls(op_name: str, progs: list[str], reuse: int) -> Calls:
    """(call, children asked for) pairs; each call makes its own seeded generator."""
    out: Calls = []
    if op_name in MUTATIONS:
        op = MUTATIONS[op_name]
        for i, src in enumerate(progs):
            for r in range(reuse):
                out.append((lambda op=op, src=src, s=(i, r): _dump(op(src, _rng(s))), 1))
    else:
        cop = CROSSOVERS[op_name]
        for i, a in enumerate(progs):
            for r in range(reuse):
                b = progs[(i + 1 + r) % len(progs)]
                out.append((lambda a=a, b=b, s=(i, r): [_dump(x) for x in cop(a, b, _rng(s))], 2))
    return out


def _rng(seed: tuple[int, int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def _dump(result: object) -> object:
    return result.model_dump()  # type: ignore[attr-defined]


def run(batch: Calls, *, cold: bool) -> tuple[float, list[object]]:
    clear_cache()
    outputs: list[object] = []
    t0 = time.perf_counter()
    for call, _ in batch:
        if cold:
            clear_cache()
        outputs.append(call())
    return time.perf_counter() - t0, outputs


def loop_workload(
    seeds: list[str], islands: int, population: int, generations: int
) -> tuple[float, int, list[object]]:
    """(seconds spent in variation calls, children asked for, every result) for one
    seeded run."""
    rng = np.random.default_rng(1)
    pools = [[seeds[(i + k) % len(seeds)] for k in range(population)] for i in range(islands)]
    seconds, asked, outputs = 0.0, 0, []
    for _ in range(generations):
        for i, pool in enumerate(pools):
            made: list[str] = []
            for _ in range(population):
                t0 = time.perf_counter()
                if rng.random() < 0.3:
                    j, k = rng.choice(len(pool), size=2, replace=False)
                    results = list(crossover(pool[int(j)], pool[int(k)], rng))
                else:
                    results = [mutate(pool[int(rng.integers(len(pool)))], rng)]
                seconds += time.perf_counter() - t0
                asked += len(results)
                outputs += [r.model_dump() for r in results]
                made += [r.source for r in results if r.source is not None]
            everyone = pool + made
            keep = rng.choice(len(everyone), size=population, replace=False)
            pools[i] = [everyone[int(x)] for x in keep]
    return seconds, asked, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--reuse", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--islands", type=int, default=2)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.children, args.reuse, args.repeats, args.generations = 2, 3, 1, 2
    progs = programs(args.children)
    print(
        f"{len(progs)} programs, {args.reuse} calls per parent per operator, "
        f"median of {args.repeats} runs; ms per child"
    )
    print(
        f"{'operator':22s} {'reference':>10s} {'cached':>8s} {'speed-up':>8s} "
        f"{'cold':>8s} {'speed-up':>8s}"
    )
    totals = {"reference": 0.0, "cached": 0.0, "cold": 0.0}
    children_total = 0
    for name in [*MUTATIONS, *CROSSOVERS]:
        batch = calls(name, progs, args.reuse)
        children = sum(n for _, n in batch)
        times: dict[str, list[float]] = {k: [] for k in totals}
        for _ in range(args.repeats):
            with reference_mode():
                seconds, want = run(batch, cold=False)
            times["reference"].append(seconds)
            for mode in ("cached", "cold"):
                seconds, have = run(batch, cold=mode == "cold")
                if have != want:
                    raise SystemExit(f"{name}: the cached path changed a child ({mode})")
                times[mode].append(seconds)
        ms = {k: 1000 * statistics.median(v) / children for k, v in times.items()}
        for k in totals:
            totals[k] += ms[k] * children
        children_total += children
        print(
            f"{name:22s} {ms['reference']:10.2f} {ms['cached']:8.2f} "
            f"{ms['reference'] / ms['cached']:7.1f}x {ms['cold']:8.2f} "
            f"{ms['reference'] / ms['cold']:7.1f}x"
        )
    avg = {k: v / children_total for k, v in totals.items()}
    print(
        f"{'all (per child)':22s} {avg['reference']:10.2f} {avg['cached']:8.2f} "
        f"{avg['reference'] / avg['cached']:7.1f}x {avg['cold']:8.2f} "
        f"{avg['reference'] / avg['cold']:7.1f}x"
    )
    print("outputs identical on both paths: yes")

    seeds = progs[: len(progs) - args.children]
    figures: dict[str, list[float]] = {"reference": [], "cached": []}
    shape = (seeds, args.islands, args.population, args.generations)
    for _ in range(args.repeats):
        clear_cache()
        with reference_mode():
            seconds, asked, want = loop_workload(*shape)
        figures["reference"].append(1000 * seconds / asked)
        clear_cache()
        seconds, asked, have = loop_workload(*shape)
        if have != want:
            raise SystemExit("loop workload: the cached path changed a child")
        figures["cached"].append(1000 * seconds / asked)
    ref, new = (statistics.median(v) for v in figures.values())
    print(
        f"loop workload ({args.islands} islands x {args.population}, {args.generations} "
        f"generations, {asked} children): reference {ref:.2f} ms/child, cached {new:.2f} "
        f"ms/child, {ref / new:.1f}x; outputs identical"
    )


if __name__ == "__main__":
    main()
