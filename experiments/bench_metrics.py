"""Speed and memory of ``score()`` (issue: metrics), printed as a table.

Scenarios, each in its own process so peak memory (max RSS of the whole process,
Python and libraries included) is its own:

* ``fast-10k``: the full report (with a reference population) for 10,000 personas in
  the 10-axis customer-support space with 100,000 probe points: cold (radius
  calibration paid) and warm (calibration cached, as in an evolution run);
* ``dense-10k``: the same report computed with full distance matrices and bisection
  (:mod:`personaevo.metrics.dense`), on the same input, in the same process as a warm
  fast run so the ratio is measured side by side;
* ``fast-100k``: 100,000 personas, to show it fits in memory.

Run: ``python experiments/bench_metrics.py`` (add ``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _population(n: int, seed: int = 0):
    from personaevo.personas import personas_from_native
    from personaevo.reference import ReferencePopulation
    from personaevo.spaces import load_space

    space = load_space("customer_support")
    native = space.grid.sample_uniform(n, np.random.default_rng(seed))
    reference = ReferencePopulation.from_marginals(space, n=20_000, seed=seed)
    return space, personas_from_native(space, native), reference


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scenario(name: str, n: int, probes: int) -> dict:
    from personaevo.metrics import dense, score

    space, personas, reference = _population(n)
    out: dict = {"scenario": name, "n": n, "probes": probes, "axes": space.dim}
    start = time.perf_counter()
    report = score(personas, space, reference=reference, n_probes=probes)
    out["cold_s"] = time.perf_counter() - start
    start = time.perf_counter()
    report = score(personas, space, reference=reference, n_probes=probes)
    out["warm_s"] = time.perf_counter() - start
    out["warm_breakdown"] = report.seconds
    if name.startswith("dense"):
        start = time.perf_counter()
        with dense.dense_geometry():
            slow = score(personas, space, reference=reference, n_probes=probes)
        out["dense_s"] = time.perf_counter() - start
        out["same_coverage"] = abs(slow.mc_coverage - report.mc_coverage) <= 0.01
    out["peak_rss_mb"] = _peak_rss_mb()
    out["mc_coverage"] = report.mc_coverage
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probes", type=int, default=100_000)
    parser.add_argument(
        "--quick", action="store_true", help="1,000 / 10,000 personas, 20,000 probes"
    )
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(scenario(args.scenario, args.n, args.probes)))
        return
    probes = 20_000 if args.quick else args.probes
    plan = [
        ("fast-10k", 1_000 if args.quick else 10_000),
        ("dense-10k", 1_000 if args.quick else 10_000),
        ("fast-100k", 10_000 if args.quick else 100_000),
    ]
    rows = []
    for name, n in plan:
        done = subprocess.run(
            [sys.executable, __file__, "--scenario", name, "--n", str(n), "--probes", str(probes)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{'scenario':10s} {'personas':>9s} {'probes':>8s} {'cold s':>7s} {'warm s':>7s} "
        f"{'dense s':>8s} {'dense/warm':>10s} {'peak RSS MB':>11s}"
    )
    for r in rows:
        dense_s = r.get("dense_s")
        ratio = f"{dense_s / r['warm_s']:.1f}x" if dense_s else ""
        print(
            f"{r['scenario']:10s} {r['n']:9d} {r['probes']:8d} "
            f"{r['cold_s']:7.2f} {r['warm_s']:7.2f} "
            f"{(f'{dense_s:.2f}' if dense_s else ''):>8s} {ratio:>10s} {r['peak_rss_mb']:11.0f}"
        )
    print("warm breakdown (s):")
    for r in rows:
        print(f"  {r['scenario']}: {r['warm_breakdown']}")


if __name__ == "__main__":
    main()
