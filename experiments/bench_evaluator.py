"""Throughput and per-evaluation overhead of the Ray evaluator on a fixed batch.

``experiments/bench_evolution.py`` times the whole loop, whose generations are
synchronous batches: one slow program (a mutant that takes 30 s where the seeds take
0.2 s) holds a generation up while the other workers idle, so the loop's speed-up is
bounded by its own evaluation times, not by the evaluator. This script measures the
evaluator alone, on a workload without such stragglers:

* the batch is ``--batch`` distinct programs made from the seed generators (each seed
  with an added module-level constant ``_bench_variant = i``, so every program has its
  own AST hash and the same cost as its seed), evaluated by
  :class:`personaevo.evolution.evaluator.RayEvaluator` with 1 and with 2 workers;
* **evals/s** = batch size / wall time of ``evaluate(batch)`` (Ray start-up and actor
  creation excluded: a warm-up batch of one evaluation per worker runs first);
* **overhead per eval** = ``(workers * wall - sum(run_seconds + scoring laps)) / batch``:
  worker-seconds not spent inside a sandbox run or its scoring (dispatch, result
  transfer, validation of the result, the idle tail of the batch);
* **ideal** = the speed-up a perfect scheduler would get from the measured evaluation
  times: ``sum(t) / max(max(t), sum(t) / workers)``.

Run: ``python experiments/bench_evaluator.py [--batch 48] [--space customer_support]``.
"""

from __future__ import annotations

import argparse
import os
import time

from personaevo.evaluate import seed_generator_paths
from personaevo.evolution.evaluator import RayEvaluator
from personaevo.programs import ast_hash, load_program
from personaevo.reference import ReferencePopulation
from personaevo.spaces import resolve_space


def variants(count: int) -> list[tuple[str, str, str]]:
    """``count`` (key, source, name) tasks cycling over the default seed generators."""
    seeds = [load_program(p) for p in seed_generator_paths("explicit")]
    tasks = []
    for i in range(count):
        seed = seeds[i % len(seeds)]
        source = f"{seed.source}\n\n_bench_variant = {i}\n"
        tasks.append((ast_hash(source), source, f"{seed.name}-{i}"))
    return tasks


def inside_seconds(evaluation) -> float:
    laps = evaluation.report.seconds.values() if evaluation.report is not None else ()
    return (evaluation.run_seconds or 0.0) + sum(laps)


def bench(workers: int, tasks, args) -> dict:
    space = resolve_space(args.space)
    reference = ReferencePopulation.default_for(space, seed=0)
    evaluator = RayEvaluator(space, reference, workers=workers, n=args.n, n_probes=args.probes)
    evaluator.start()
    try:
        warm = variants(len(tasks) + workers)[len(tasks) :]
        evaluator.evaluate(warm)
        start = time.monotonic()
        done = evaluator.evaluate(tasks)
        wall = time.monotonic() - start
    finally:
        evaluator.close()
    times = [inside_seconds(e) for e in done.values()]
    failed = sum(not e.ok for e in done.values())
    return {
        "workers": workers,
        "wall": wall,
        "rate": len(done) / wall,
        "inside": sum(times) / len(times),
        "overhead": (workers * wall - sum(times)) / len(times),
        "ideal": sum(times) / max(max(times), sum(times) / workers),
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="customer_support")
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--probes", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2, help="alternating rounds per setting")
    args = p.parse_args(argv)
    tasks = variants(args.batch)
    print(
        f"space {args.space}, batch {args.batch} programs, n {args.n}, probes {args.probes}, "
        f"cpus {os.cpu_count()}, rounds {args.repeats} (settings alternate; best round kept)"
    )
    best: dict[int, dict] = {}
    for _ in range(args.repeats):
        for w in args.workers:
            result = bench(w, tasks, args)
            if w not in best or result["rate"] > best[w]["rate"]:
                best[w] = result
    print(
        f"{'workers':>7} {'wall s':>7} {'evals/s':>8} {'run+score s':>11} "
        f"{'overhead ms':>11} {'ideal x':>7} {'failed':>6}"
    )
    for w in args.workers:
        r = best[w]
        print(
            f"{w:>7} {r['wall']:>7.1f} {r['rate']:>8.2f} {r['inside']:>11.3f} "
            f"{1000 * r['overhead']:>11.1f} {r['ideal']:>7.2f} {r['failed']:>6}"
        )
    low, high = min(args.workers), max(args.workers)
    if low != high:
        print(f"speed-up {high} vs {low} workers: {best[high]['rate'] / best[low]['rate']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
