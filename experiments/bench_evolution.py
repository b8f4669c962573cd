"""Throughput, loop overhead and worker memory of ``run_evolution``.

The same small run (``--space``, ``--generations``, ``--population``, ``--islands``,
``--n``, ``--probes``, ``--seed``) is made with 1 and with 2 Ray workers (``--workers``
lists them), one after the other (each run starts and stops its own Ray). For each:

* **evals/s (steady)**: evaluations made in generations 1..G divided by the wall time
  from the end of generation 0 (seeds and initial islands evaluated, first checkpoint
  written) to the end of generation G, both taken in the ``log`` callback that
  ``run_evolution`` calls after each checkpoint. Ray start-up, actor creation and
  generation 0 are left out; **evals/s (total)** divides all evaluations by the wall
  time of the whole ``run_evolution`` call, start-up included.
  The ratio of the 2-worker to the 1-worker steady rate is the speed-up.
* **overhead per eval**: the worker-seconds of generations 1..G not spent inside
  an evaluation's sandbox run or its scoring, per evaluation::

      (workers * wall_steady - sum(run_seconds + sum(report.seconds))) / evaluations

  where ``run_seconds`` is the sandbox's wall time for the program run and
  ``report.seconds`` the scoring laps of :func:`personaevo.metrics.score` (read back
  from ``evaluations.jsonl``). What remains is everything else: Ray task dispatch and
  result transfer, ``check_personas``, the ``Evaluation`` round trip, variation
  operators and NSGA-II selection in the driver, checkpoint writes, and workers left
  idle at the end of each generation's batch (a generation is one synchronous batch, so
  with 2 workers the slower tail leaves a slot idle: this part grows with workers and
  shrinks with batch size). With 1 worker the figure is the plain per-evaluation loop
  cost. The time spent in this script's own callback (the memory sampling) is
  subtracted from the wall time.
* **memory per worker**: after each generation, the RSS of every process whose
  command line contains ``_Actor`` (Ray's title for the evaluation actors), and
  separately of their child processes (the sandbox's worker processes), via ``psutil``
  (``/proc/PID/status`` VmRSS if psutil is missing). The maximum over generations of
  the mean per actor is printed, with the largest single actor.

Run: ``python experiments/bench_evolution.py`` (``--quick`` for generations 2,
population 6).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from personaevo.evolution import EvolveConfig, run_evolution

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

MB = 1024 * 1024


def _proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def actor_memory() -> tuple[list[int], list[int]]:
    """(RSS of each actor process, RSS of each actor's children summed per actor)."""
    actors, children = [], []
    if psutil is not None:
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline", "name"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
                if "_Actor" not in cmd or proc.pid == me:
                    continue
                actors.append(proc.memory_info().rss)
                children.append(sum(c.memory_info().rss for c in proc.children(recursive=True)))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return actors, children
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            if "_Actor" in cmd:
                actors.append(_proc_rss(int(entry.name)))
                children.append(0)  # children not traced without psutil
        except OSError:
            continue
    return actors, children


def bench(workers: int, args, workdir: Path) -> dict:
    config = EvolveConfig(
        space=args.space,
        generations=args.generations,
        population=args.population,
        islands=args.islands,
        workers=workers,
        n=args.n,
        probes=args.probes,
        seed=args.seed,
        out=str(workdir / f"w{workers}"),
    )
    marks: list[float] = []
    callback_seconds: list[float] = []
    samples: list[tuple[list[int], list[int]]] = []

    def log(line: str) -> None:
        now = time.monotonic()
        marks.append(now)
        samples.append(actor_memory())
        callback_seconds.append(time.monotonic() - now)
        print(f"    [{workers}w] {line}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    evo, rundir, _ = run_evolution(config, log=log)
    total = time.monotonic() - t0

    records = [
        json.loads(line)
        for line in (rundir.path / "evaluations.jsonl").read_text().splitlines()
        if line.strip()
    ]
    steady = [r for r in records if r["generation"] >= 1]
    inside = 0.0
    for r in steady:
        ev = r["evaluation"]
        inside += ev.get("run_seconds", 0.0)
        if ev.get("report"):
            inside += sum(ev["report"].get("seconds", {}).values())
    # each callback runs just after its mark: all but the last fall inside the window
    wall_steady = marks[-1] - marks[0] - sum(callback_seconds[:-1])
    n_steady = len(steady)
    actor_means = [sum(a) / len(a) for a, _ in samples if a]
    child_means = [sum(c) / len(c) for a, c in samples if a]
    return {
        "workers": workers,
        "evaluations": evo.evaluations,
        "steady_evals": n_steady,
        "wall_total": total,
        "wall_steady": wall_steady,
        "rate_steady": n_steady / wall_steady if wall_steady > 0 else float("nan"),
        "rate_total": evo.evaluations / total,
        "inside_per_eval": inside / n_steady if n_steady else float("nan"),
        "overhead_per_eval": (workers * wall_steady - inside) / n_steady
        if n_steady
        else float("nan"),
        "actors_seen": max((len(a) for a, _ in samples), default=0),
        "actor_rss_mean": max(actor_means, default=0) / MB,
        "actor_rss_max": max((max(a) for a, _ in samples if a), default=0) / MB,
        "children_rss_mean": max(child_means, default=0) / MB,
        "failures": dict(evo.failures),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="generations 2, population 6")
    p.add_argument("--space", default="customer_support")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--islands", type=int, default=2)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--probes", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.generations, args.population = 2, 6
    print(
        f"space {args.space}, generations {args.generations}, population {args.population}, "
        f"islands {args.islands}, n {args.n}, probes {args.probes}, seed {args.seed}, "
        f"cpus {os.cpu_count()}, memory via {'psutil' if psutil else '/proc'}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-evo-") as tmp:
        for w in args.workers:
            results.append(bench(w, args, Path(tmp)))
    header = (
        f"{'workers':>7} {'evals':>6} {'steady':>6} {'wall s':>7} {'steady s':>8} "
        f"{'evals/s':>8} {'evals/s':>8} {'run+score':>9} {'overhead':>9} "
        f"{'actors':>6} {'RSS/actor':>9} {'RSS max':>8} {'children':>8}"
    )
    sub = (
        f"{'':>7} {'total':>6} {'evals':>6} {'total':>7} {'window':>8} "
        f"{'steady':>8} {'total':>8} {'s/eval':>9} {'s/eval':>9} "
        f"{'seen':>6} {'MB':>9} {'MB':>8} {'MB/actor':>8}"
    )
    print(header)
    print(sub)
    for r in results:
        print(
            f"{r['workers']:>7} {r['evaluations']:>6} {r['steady_evals']:>6} "
            f"{r['wall_total']:>7.1f} {r['wall_steady']:>8.1f} {r['rate_steady']:>8.2f} "
            f"{r['rate_total']:>8.2f} {r['inside_per_eval']:>9.3f} "
            f"{r['overhead_per_eval']:>9.3f} {r['actors_seen']:>6} "
            f"{r['actor_rss_mean']:>9.0f} {r['actor_rss_max']:>8.0f} "
            f"{r['children_rss_mean']:>8.0f}"
        )
    by = {r["workers"]: r for r in results}
    if 1 in by and 2 in by:
        print(
            f"speed-up 2 vs 1 worker: steady {by[2]['rate_steady'] / by[1]['rate_steady']:.2f}x, "
            f"total {by[2]['rate_total'] / by[1]['rate_total']:.2f}x"
        )
    for r in results:
        if r["failures"]:
            print(f"failures with {r['workers']} workers: {r['failures']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
