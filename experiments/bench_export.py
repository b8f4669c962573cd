"""Speed and memory of ``personaevo export`` (issue: export), printed per stage.

Target: 50,000 personas selected from a pool of 200,000 within 60 s and 2 GB on 2 cores.

A run directory is made first, outside the timing, by ``personaevo evolve`` in a
subprocess (2 generations on ``customer_support``; or pass ``--run DIR``). The export then
runs in this process, with 2 sandbox workers, and prints per stage the wall time, the CPU
time of this process (the sandbox workers' time is not in it) and the peak resident
memory of this process so far. Memory of the whole export = this process's peak + the
sandbox workers (each a zygote with numpy/scipy preloaded, their peak read from
``/proc/PID/status``) + the largest program run of each worker.

Run: ``python experiments/bench_export.py`` (``--n 5000 --pool 20000`` for a quick one;
``--select facility`` for the other selection).

Measured positions: ``python experiments/bench_export.py --assess embedding`` makes a run
evolved with ``--assess embedding`` (text-writing seeds; 2 generations of 2 islands of 4,
n=50) and exports 5,000 personas from a pool of 20,000 by default, each pooled persona
measured by the embedding assessor in the exporting process. It prints the assessment's
speed: personas measured per second, sentences per second, and how many sentences the
encoder actually ran (the rest came from its per-process cache), and the encoder's speed on
2,000 sentences it has not seen (free text would not repeat). The 60 s target is for
explicit runs only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_run(out: Path, assess: str = "explicit") -> None:
    command = [
        sys.executable,
        "-m",
        "personaevo.cli",
        "evolve",
        "--space",
        "customer_support",
        "--generations",
        "2",
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    if assess != "explicit":
        command += ["--assess", assess, "--population", "4", "--n", "50"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    print(f"run directory {out} made in {time.perf_counter() - started:.0f} s (not timed)")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run directory (default: make one)")
    parser.add_argument("--n", type=int, help="default 50,000 (5,000 with --assess)")
    parser.add_argument("--pool", type=int, help="default 200,000 (20,000 with --assess)")
    parser.add_argument(
        "--assess",
        default="explicit",
        choices=("explicit", "embedding", "questionnaire"),
        help="make the run with this assessment; the export measures as the run did",
    )
    parser.add_argument("--select", default="maximin", choices=("maximin", "facility", "none"))
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    measured = args.assess != "explicit"
    args.n = args.n or (5_000 if measured else 50_000)
    args.pool = args.pool or (20_000 if measured else 200_000)

    from personaevo.export import export_personas
    from personaevo.sandbox import Sandbox, SandboxLimits

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        make_run(run, args.assess)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f} (1 min)")
    out = work / "personas.jsonl"
    limits = SandboxLimits(wall_seconds=120, cpu_seconds=120)
    with Sandbox(workers=2, limits=limits) as sandbox:
        pids = [p for p in sandbox.worker_pids() if p]
        encoded_before = _encoded()
        started = time.perf_counter()
        summary = export_personas(
            run,
            n=args.n,
            out=out,
            select_method=args.select,
            pool_size=args.pool,
            chunk=args.chunk,
            sandbox=sandbox,
            seed=0,
        )
        total = time.perf_counter() - started
        workers_mb = [peak_rss_mb(p) for p in pids]
        encoded = _encoded() - encoded_before
    print(
        f"\nexport of {summary.exported:,} personas ({args.select}) from a pool of "
        f"{summary.pool:,} ({summary.pool_requested:,} asked of {len(summary.programs)} "
        "front programs)"
    )
    print(f"{'stage':<12} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}")
    for stage in summary.stages:
        print(
            f"{stage.name:<12} {stage.seconds:>8.2f} {stage.cpu_seconds:>8.2f} "
            f"{stage.peak_rss_mb:>12.0f}"
        )
    print(f"{'total':<12} {total:>8.2f}")
    programs_cpu = sum(y.cpu_seconds for y in summary.programs)
    print(f"the programs' own CPU time in the 2 sandbox workers: {programs_cpu:.1f} s")
    largest_run = summary.sandbox_max_rss_mb or 0.0
    driver = summary.stages[-1].peak_rss_mb
    whole = driver + sum(workers_mb) + len(workers_mb) * largest_run
    print(
        f"\nmemory: exporting process {driver:.0f} MB + sandbox workers "
        f"{' + '.join(f'{w:.0f}' for w in workers_mb)} MB + largest program run "
        f"{largest_run:.0f} MB per worker = {whole:.0f} MB (target 2048 MB)"
    )
    a = summary.assessment
    if a is not None:
        sentences = a.detail.get("sentences", 0)
        print(
            f"\nassessment ({a.method}): {a.personas:,} personas ({a.measured:,} measured, "
            f"unmeasured {a.unmeasured or 'none'}) in {a.seconds:.1f} s = "
            f"{a.personas / a.seconds:,.0f} personas/s; {sentences:,} sentences = "
            f"{sentences / a.seconds:,.0f} sentences/s, of which the encoder ran {encoded:,} "
            "new ones (the rest from its cache)"
        )
        if a.method == "embedding":
            novel_rate(sentences / max(a.personas, 1))
    target = " (target 60 s)" if a is None else " (no target for measured runs)"
    print(f"time: {total:.1f} s{target}")
    print(f"output: {out} ({out.stat().st_size / 1e6:.1f} MB)")


def novel_rate(per_persona: float, count: int = 2000) -> None:
    """The encoder's speed on text it has not seen (a phrase bank repeats its sentences,
    so the export above mostly reads the cache; free text from a language model would
    not): ``count`` distinct sentences, each a phrase-bank-like sentence with a number."""
    from personaevo.assess.embedding import load_encoder

    encoder = load_encoder(None)
    texts = [f"Case {i}: waits {i % 97} minutes on hold, then asks again." for i in range(count)]
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    rate = count / seconds
    print(
        f"uncached: {count:,} new sentences in {seconds:.1f} s = {rate:,.0f} sentences/s, "
        f"i.e. {rate / per_persona:,.0f} personas/s at {per_persona:.1f} sentences per persona"
    )


def _encoded() -> int:
    """Sentences the process's embedding encoder has run so far (0 if none is loaded)."""
    from personaevo.assess.embedding import load_encoder

    info = load_encoder.cache_info()
    return load_encoder(None).encoded if info.currsize else 0


if __name__ == "__main__":
    main()
