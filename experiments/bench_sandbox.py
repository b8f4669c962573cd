"""Benchmark the sandbox: per-evaluation overhead and worker scaling.

Prints

* the sandbox overhead per evaluation of a trivial program -- wall time of
  ``Sandbox.run`` (measured by the caller) minus the program's own time (measured inside
  the child: compile + module execution + ``generate``) -- as median and p90, for a
  pre-loaded program and for raw source (which adds the static contract check);
* throughput (evaluations/s) with 1 and 2 workers for a program doing ~150 ms of CPU
  work, measured in alternating rounds in one run, and their ratio.

Usage: ``python experiments/bench_sandbox.py [--runs 300] [--jobs 24] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personaevo.programs import load_program
from personaevo.sandbox import Job, Sandbox, SandboxLimits

TRIVIAL = """
def generate(space, n, rng, llm=None):
    return [{"id": i, "traits": {"x": float(rng.random())}} for i in range(n)]
"""

CPU_WORK = """
def generate(space, n, rng, llm=None):
    total = 0
    for i in range(space["loops"]):
        total += i * i % 7
    return [{"id": 0, "traits": {"total": total}}]
"""

SPACE = {"axes": ["x"]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def overhead(sandbox: Sandbox, program: object, runs: int) -> tuple[float, float, float]:
    """Median and p90 overhead (ms) and median in-child program time (ms)."""
    for _ in range(20):  # warm up caches and the worker
        sandbox.run(program, SPACE, 10, 0)
    costs, inner = [], []
    for seed in range(runs):
        start = time.perf_counter()
        result = sandbox.run(program, SPACE, 10, seed)
        wall = time.perf_counter() - start
        assert result.ok and result.program_seconds is not None, result.message
        costs.append((wall - result.program_seconds) * 1e3)
        inner.append(result.program_seconds * 1e3)
    return statistics.median(costs), percentile(costs, 0.9), statistics.median(inner)


def calibrate(sandbox: Sandbox, target_s: float) -> int:
    """Loop count that makes CPU_WORK take about ``target_s`` inside the sandbox."""
    program = load_program(CPU_WORK)
    loops = 200_000
    for _ in range(4):
        result = sandbox.run(program, {"loops": loops}, 1, 0)
        assert result.ok and result.program_seconds, result.message
        loops = max(1, int(loops * target_s / result.program_seconds))
    return loops


def throughput(sandbox: Sandbox, loops: int, jobs: int) -> tuple[float, float]:
    """Evaluations per second for ``jobs`` CPU-bound runs, and their median program time."""
    program = load_program(CPU_WORK)
    batch = [Job(program, {"loops": loops}, 1, seed) for seed in range(jobs)]
    start = time.perf_counter()
    results = sandbox.map(batch)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    return jobs / elapsed, statistics.median(r.program_seconds or 0.0 for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="overhead samples")
    parser.add_argument("--jobs", type=int, default=24, help="CPU-bound jobs per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating 1/2-worker rounds")
    parser.add_argument("--isolation", choices=["auto", "none"], default="auto")
    parser.add_argument("--cpu-ms", type=float, default=150.0, help="CPU work per job")
    args = parser.parse_args()

    limits = SandboxLimits(wall_seconds=30, cpu_seconds=30)
    print(
        f"python {platform.python_version()} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, euid {os.geteuid()}"
    )
    start = time.perf_counter()
    one = Sandbox(workers=1, limits=limits, isolation=args.isolation)
    print(f"1-worker pool ready in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    two = Sandbox(workers=2, limits=limits, isolation=args.isolation)
    print(f"2-worker pool ready in {time.perf_counter() - start:.2f} s")
    try:
        iso = one.isolation
        print(
            f"isolation: network={iso.network} pid={iso.pid} mount={iso.mount} "
            f"uid={iso.uid} user_namespace={iso.user_namespace}"
        )

        print(f"\nOverhead per evaluation, trivial program (n=10), {args.runs} runs, 1 worker")
        med, p90, inner = overhead(one, load_program(TRIVIAL), args.runs)
        print(
            f"  pre-loaded program : median {med:6.2f} ms   p90 {p90:6.2f} ms"
            f"   (program itself: {inner:.2f} ms)"
        )
        med, p90, inner = overhead(one, TRIVIAL, args.runs)
        print(
            f"  source text        : median {med:6.2f} ms   p90 {p90:6.2f} ms"
            "   (adds load_program + contract check)"
        )

        loops = calibrate(one, args.cpu_ms / 1e3)
        print(
            f"\nThroughput, CPU-bound program (~{args.cpu_ms:.0f} ms, {loops:,} loops), "
            f"{args.jobs} jobs per round, {args.rounds} rounds"
        )
        rates: dict[int, list[float]] = {1: [], 2: []}
        inner_times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for workers, pool in ((1, one), (2, two)):
                rate, inner_s = throughput(pool, loops, args.jobs)
                rates[workers].append(rate)
                inner_times[workers].append(inner_s)
        for workers in (1, 2):
            print(
                f"  {workers} worker{'s' if workers > 1 else ' '}: "
                f"{statistics.median(rates[workers]):6.2f} evals/s "
                f"(rounds: {', '.join(f'{r:.2f}' for r in rates[workers])}; "
                f"median program time {statistics.median(inner_times[workers]) * 1e3:.0f} ms)"
            )
        ratio = statistics.median(rates[2]) / statistics.median(rates[1])
        print(f"  ratio 2/1 workers: {ratio:.2f}x")
    finally:
        one.close()
        two.close()


if __name__ == "__main__":
    main()
