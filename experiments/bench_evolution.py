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
* **memory per worker**: after each generation, the RSS and USS of every evaluation
  actor (a descendant of this process, so other Ray instances on the machine are not
  counted, whose command line contains ``_Actor``, Ray's title for them, and
  whose parent is not one: the sandbox processes forked from an actor inherit its
  title), and separately the summed RSS/USS of each actor's descendants (the sandbox's
  processes), via ``psutil`` (``/proc/PID/status`` VmRSS, actors only, without it).
  The maximum over generations of the mean per actor is printed, with the largest
  single actor RSS. RSS of forked children counts pages shared with the actor again, so
  USS (pages unique to a process) is the better cost of one more worker.

* **CPU in the steady window**: CPU seconds (user + system) of the driver (the loop:
  variation, selection, checkpoints), of the evaluation actors with their sandbox
  processes, and of Ray's own processes, via ``psutil``; "cores busy" divides their sum
  by the window. On a machine with as many cores as workers the driver has no core of
  its own, so the 2-worker run cannot finish before (its CPU seconds / cores): the
  **CPU ceiling** printed is the 1-worker window divided by that.

The worker counts are run ``--rounds`` times, alternating (1, 2, 1, 2, ...), and the
best steady rate of each is kept: this machine is shared and noisy.

Run: ``python experiments/bench_evolution.py`` (``--quick`` for generations 2,
population 6; ``--keep DIR`` keeps the runs as ``DIR/roundR/wW``).
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


def _is_actor(cmd: str) -> bool:
    return "_Actor" in cmd


def actor_memory() -> list[dict]:
    """One entry per evaluation actor: its RSS and USS, and its descendants' (the
    sandbox processes, which are forked from the actor and so carry the same title;
    an ``_Actor`` process whose parent is also one is a descendant, not an actor)."""
    out: list[dict] = []
    if psutil is not None:
        titled = {}
        for proc in psutil.Process().children(recursive=True):
            try:
                proc.info = {"ppid": proc.ppid()}
                cmd = " ".join(proc.cmdline()) + " " + proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if _is_actor(cmd):
                titled[proc.pid] = proc
        for proc in titled.values():
            if proc.info["ppid"] in titled:
                continue
            try:
                full = proc.memory_full_info()
                kids = proc.children(recursive=True)
                kid_rss = kid_uss = 0
                for kid in kids:
                    try:
                        info = kid.memory_full_info()
                        kid_rss += info.rss
                        kid_uss += info.uss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                out.append(
                    {
                        "rss": full.rss,
                        "uss": full.uss,
                        "kids": len(kids),
                        "kid_rss": kid_rss,
                        "kid_uss": kid_uss,
                    }
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out
    parents = {}
    for entry in Path("/proc").iterdir():  # without psutil: not limited to our own tree
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            if _is_actor(cmd):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
        except OSError:
            continue
    for pid, ppid in parents.items():
        if ppid not in parents:
            rss = _proc_rss(pid)
            out.append({"rss": rss, "uss": float("nan"), "kids": 0, "kid_rss": 0, "kid_uss": 0})
    return out


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process (``driver``: the loop,
    variation, selection, checkpoints), by the evaluation actors and everything they
    started (``evaluation``: the sandbox's processes, whose finished children are
    counted through their parent) and by Ray's own processes (``ray``). Needs psutil."""
    out = {"driver": 0.0, "evaluation": 0.0, "ray": 0.0}
    if psutil is None:
        return out
    me = psutil.Process()
    times = me.cpu_times()
    out["driver"] = times.user + times.system
    actors: set[int] = set()
    procs = []
    for proc in me.children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline()) + " " + proc.name()
            t = proc.cpu_times()
            procs.append((proc, t.user + t.system + t.children_user + t.children_system))
            if _is_actor(cmd):
                actors.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc, seconds in procs:
        try:
            lineage = {proc.pid} | {parent.pid for parent in proc.parents()}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out["evaluation" if lineage & actors else "ray"] += seconds
    return out


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
    samples: list[list[dict]] = []
    cpu: list[dict[str, float]] = []

    def log(line: str) -> None:
        now = time.monotonic()
        marks.append(now)
        cpu.append(cpu_seconds())
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
    per_generation: dict[int, list[float]] = {}
    for r in steady:
        ev = r["evaluation"]
        seconds = ev.get("run_seconds", 0.0)
        if ev.get("report"):
            seconds += sum(ev["report"].get("seconds", {}).values())
        inside += seconds
        per_generation.setdefault(r["generation"], []).append(seconds)
    # the best a scheduler could do with 2 workers when each generation is one batch
    bound = sum(max(max(t), sum(t) / 2) for t in per_generation.values())
    # each callback runs just after its mark: all but the last fall inside the window
    wall_steady = marks[-1] - marks[0] - sum(callback_seconds[:-1])
    n_steady = len(steady)

    def peak(field: str) -> float:  # max over samples of the mean over actors, in MB
        means = [sum(a[field] for a in sample) / len(sample) for sample in samples if sample]
        return max(means, default=0.0) / MB

    steady_cpu = {part: cpu[-1][part] - cpu[0][part] for part in cpu[0]}
    return {
        "workers": workers,
        "cpu": steady_cpu,
        "cores_busy": sum(steady_cpu.values()) / wall_steady if wall_steady > 0 else 0.0,
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
        "ideal_2w": inside / bound if bound else float("nan"),
        "slowest": max((max(t) for t in per_generation.values()), default=0.0),
        "actors_seen": max((len(a) for a in samples), default=0),
        "actor_rss": peak("rss"),
        "actor_uss": peak("uss"),
        "kids": max((a["kids"] for sample in samples for a in sample), default=0),
        "kid_rss": peak("kid_rss"),
        "kid_uss": peak("kid_uss"),
        "actor_rss_max": max((a["rss"] for s in samples for a in s), default=0) / MB,
        "failures": dict(evo.failures),
        "front": len(evo.front),
        "front_distinct": len({tuple(ind.fitness.values) for ind in evo.front}),
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
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best kept")
    p.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = p.parse_args(argv)
    if args.quick:
        args.generations, args.population = 2, 6
    print(
        f"space {args.space}, generations {args.generations}, population {args.population}, "
        f"islands {args.islands}, n {args.n}, probes {args.probes}, seed {args.seed}, "
        f"cpus {os.cpu_count()}, memory via {'psutil' if psutil else '/proc'}"
    )
    best: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-evo-") as tmp:
        for round_ in range(args.rounds):
            for w in args.workers:
                workdir = (args.keep or Path(tmp)) / f"round{round_}"
                r = bench(w, args, workdir)
                print(
                    f"round {round_ + 1}, {w} workers: steady {r['rate_steady']:.2f} evals/s",
                    flush=True,
                )
                if w not in best or r["rate_steady"] > best[w]["rate_steady"]:
                    best[w] = r
    results = [best[w] for w in args.workers]
    header = (
        f"{'workers':>7} {'evals':>6} {'steady':>6} {'wall s':>7} {'steady s':>8} "
        f"{'evals/s':>8} {'evals/s':>8} {'run+score':>9} {'overhead':>9} "
        f"{'actors':>6} {'actor':>6} {'actor':>6} {'actor':>6} {'sandbox':>7} {'sandbox':>7} "
        f"{'sandbox':>7}"
    )
    sub = (
        f"{'':>7} {'total':>6} {'evals':>6} {'total':>7} {'window':>8} "
        f"{'steady':>8} {'total':>8} {'s/eval':>9} {'s/eval':>9} "
        f"{'seen':>6} {'RSS MB':>6} {'USS MB':>6} {'maxRSS':>6} {'procs':>7} {'RSS MB':>7} "
        f"{'USS MB':>7}"
    )
    print(header)
    print(sub)
    for r in results:
        print(
            f"{r['workers']:>7} {r['evaluations']:>6} {r['steady_evals']:>6} "
            f"{r['wall_total']:>7.1f} {r['wall_steady']:>8.1f} {r['rate_steady']:>8.2f} "
            f"{r['rate_total']:>8.2f} {r['inside_per_eval']:>9.3f} "
            f"{r['overhead_per_eval']:>9.3f} {r['actors_seen']:>6} "
            f"{r['actor_rss']:>6.0f} {r['actor_uss']:>6.0f} {r['actor_rss_max']:>6.0f} "
            f"{r['kids']:>7} {r['kid_rss']:>7.0f} {r['kid_uss']:>7.0f}"
        )
    print(
        "memory: peak over generations of the mean per actor; sandbox = the actor's "
        "descendant processes, summed per actor (RSS counts pages shared with the actor "
        "after fork again; USS = pages unique to the process)"
    )
    by = {r["workers"]: r for r in results}
    if 1 in by and 2 in by:
        print(
            f"speed-up 2 vs 1 worker: steady {by[2]['rate_steady'] / by[1]['rate_steady']:.2f}x, "
            f"total {by[2]['rate_total'] / by[1]['rate_total']:.2f}x"
        )
    for r in results:
        c = r["cpu"]
        print(
            f"{r['workers']} workers, CPU in the steady window: driver {c['driver']:.1f} s, "
            f"evaluation {c['evaluation']:.1f} s, Ray {c['ray']:.1f} s; "
            f"{r['cores_busy']:.2f} of {os.cpu_count()} cores busy"
        )
    if 1 in by and 2 in by and os.cpu_count():
        need = sum(by[2]["cpu"].values()) / os.cpu_count()
        print(
            f"CPU ceiling: the 2-worker run needed {need:.1f} s of this machine's "
            f"{os.cpu_count()} cores in the steady window, so no schedule could beat "
            f"{by[1]['wall_steady'] / need:.2f}x here"
        )
    for r in results:
        print(
            f"{r['workers']} workers: slowest evaluation {r['slowest']:.1f} s; a perfect "
            f"scheduler of these evaluation times, one synchronous batch per generation, "
            f"would get {r['ideal_2w']:.2f}x with 2 workers (experiments/bench_evaluator.py "
            "measures the evaluator on a batch without stragglers)"
        )
        print(
            f"front with {r['workers']} workers: {r['front']} programs, "
            f"{r['front_distinct']} distinct objective vectors"
        )
        if r["failures"]:
            print(f"failures with {r['workers']} workers: {r['failures']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
