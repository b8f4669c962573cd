"""Does evolution beat the text-writing seeds when positions are *measured* from text?

The generators here write persona text (``generators/phrase_bank.py``: uniform placement,
random phrases per band; ``generators/phrase_sobol.py``: Sobol placement, one phrase per
band; both fill templates with the axes' anchor texts, no language model). Under
``assess: embedding`` their declared traits are ignored: each persona is placed where
the all-MiniLM-L6-v2 sentence embeddings of its text fall between each axis's anchor
texts (:mod:`personaevo.assess.embedding`). Evolution only sees the scores of those
measured positions, so it must find programs whose *text* covers the space.

For each run seed ``s`` in ``0..seeds-1``, a ``run_evolution`` run on ``--space``
(default ``customer_support``, scored against its own reference) with ``assess:
embedding``, those two seeds, and the default objectives with a reference
(``reference.support_coverage_tway.3``, ``reference.rare_hits_tway.3``,
``reference.plausibility_tway.3``). Three point sets in that objective space:

* **front**: the run's final Pareto front;
* **evolved**: the non-dominated set of every non-seed program the run evaluated;
* **seeds**: the two seeds' points (evaluated by the same run, same n and seed).

Hypervolume is computed exactly as in ``experiments/evolution_evidence.py`` (imported,
not copied): per run seed, every objective is scaled by its best value over all points
of all sets, and HV is the share of the box ``[0, best_1] x ... x [0, best_k]`` that a
set dominates. Coverage of the measured positions (``mc_coverage``, ``tway_coverage.2``
and ``.3``: feasible bin combinations occupied, ``reference.support_coverage_tway.3``) is
read off the reports of the best evolved program (the non-seed front member with the
largest sum of scaled objectives), of the best evolved front member for each metric, and
of the seeds.

Run: ``python experiments/embedding_evolution.py`` (``--quick`` for a smaller run).
Each run starts its own Ray, and each Ray actor loads the embedding model once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from evolution_evidence import hypervolume, ms, nondominated, scales

from personaevo.evaluate import seed_generator_paths
from personaevo.evolution import EvolveConfig, run_evolution
from personaevo.evolution.loop import objective_values

TEXT_SEEDS = ("phrase_bank", "phrase_sobol")
COVERAGE = (
    "mc_coverage",
    "tway_coverage.2",
    "tway_coverage.3",
    "reference.support_coverage_tway.3",
)


def one_run(seed: int, args, workdir: Path, log) -> dict:
    seeds = [str(p) for p in seed_generator_paths() if p.stem in TEXT_SEEDS]
    config = EvolveConfig(
        space=args.space,
        assess="embedding",
        seeds=seeds,
        generations=args.generations,
        population=args.population,
        islands=args.islands,
        workers=args.workers,
        n=args.n,
        probes=args.probes,
        seed=seed,
        out=str(workdir / f"{args.space}-{seed}"),
    )
    started = time.monotonic()
    evo, _rundir, _ = run_evolution(config, log=lambda line: None)
    seconds = time.monotonic() - started
    seed_keys = {s.key for s in evo.seeds}
    evolved = [
        objective_values(e, evo.objectives) for k, e in evo.cache.items() if k not in seed_keys
    ]
    sets = {
        "front": nondominated([ind.fitness.values for ind in evo.front]),
        "evolved": nondominated(evolved),
        "seeds": nondominated([objective_values(evo.cache[k], evo.objectives) for k in seed_keys]),
    }
    offset, span = scales(np.vstack([s for s in sets.values() if s.size]))
    hv = {name: hypervolume(points, offset, span) for name, points in sets.items()}

    def normsum(key: str) -> float:
        values = np.asarray(objective_values(evo.cache[key], evo.objectives))
        return float(np.sum((values - offset) / span))

    candidates = [ind.key for ind in evo.front if ind.key not in seed_keys] or [
        k for k, e in evo.cache.items() if k not in seed_keys and e.ok
    ]
    best = max(candidates, key=normsum)

    def coverage(key: str) -> dict[str, float]:
        flat = evo.cache[key].report.flat()
        return {name: float(flat[name]) for name in COVERAGE}

    log(
        f"  seed {seed}: {evo.evaluations} evaluations in {seconds:.0f} s, front "
        f"{len(evo.front)}; HV front {hv['front']:.4f} evolved {hv['evolved']:.4f} "
        f"seeds {hv['seeds']:.4f}; best evolved {evo.cache[best].program}"
    )
    front_evolved = [ind.key for ind in evo.front if ind.key not in seed_keys] or candidates
    return {
        "objectives": evo.objectives,
        "hv": hv,
        "best": coverage(best),
        "front_max": {c: max(coverage(k)[c] for k in front_evolved) for c in COVERAGE},
        "seeds": {s.name: coverage(s.key) for s in evo.seeds},
        "best_objectives": objective_values(evo.cache[best], evo.objectives),
        "seed_objectives": {
            s.name: objective_values(evo.cache[s.key], evo.objectives) for s in evo.seeds
        },
        "evaluations": evo.evaluations,
        "failures": dict(evo.failures),
        "seconds": seconds,
    }


def report(runs: list[dict], args) -> None:
    n = len(runs)
    print(
        f"\n=== {args.space}, assess: embedding, {n} run seeds, "
        f"{ms([r['evaluations'] for r in runs])} evaluations per run, "
        f"{ms([r['seconds'] for r in runs])} s per run ==="
    )
    print("Hypervolume of the objectives (share of the per-seed best-value box; mean ± sd)")
    for name, label in (
        ("front", "final Pareto front"),
        ("evolved", "evolved only (non-seed programs)"),
        ("seeds", "text-writing seeds"),
    ):
        print(f"  {label:34s} {ms([r['hv'][name] for r in runs])}")
    print("Coverage of the measured positions (mean ± sd over run seeds)")
    print(f"  {'program':22s}" + "".join(f"{c:>36s}" for c in COVERAGE))
    rows = [
        ("best evolved", [r["best"] for r in runs]),
        ("front max per metric", [r["front_max"] for r in runs]),
    ]
    rows += [(name, [r["seeds"][name] for r in runs]) for name in runs[0]["seeds"]]
    for label, dicts in rows:
        cells = [ms([d[c] for d in dicts]) for c in COVERAGE]
        print(f"  {label:22s}" + "".join(f"{c:>36s}" for c in cells))
    objectives = [o.replace("reference.", "") for o in runs[0]["objectives"]]
    print("Objectives (raw; mean ± sd)")
    print(f"  {'program':22s}" + "".join(f"{o:>30s}" for o in objectives))
    rows = [("best evolved", [r["best_objectives"] for r in runs])]
    rows += [(name, [r["seed_objectives"][name] for r in runs]) for name in runs[0]["seeds"]]
    for label, vectors in rows:
        arr = np.array(vectors, dtype=float)
        cells = [ms(arr[:, j]) for j in range(arr.shape[1])]
        print(f"  {label:22s}" + "".join(f"{c:>30s}" for c in cells))
    hv_wins = sum(r["hv"]["front"] > r["hv"]["seeds"] + 1e-12 for r in runs)
    cov_wins = {
        c: sum(r["front_max"][c] > max(s[c] for s in r["seeds"].values()) + 1e-12 for r in runs)
        for c in COVERAGE
    }
    failures: dict[str, int] = {}
    for r in runs:
        for kind, count in r["failures"].items():
            failures[kind] = failures.get(kind, 0) + count
    print("Verdict:")
    print(f"  front HV > seeds' HV in {hv_wins}/{n} runs")
    for c, wins in cov_wins.items():
        print(f"  an evolved front program beats every seed on {c} in {wins}/{n} runs")
    if hv_wins < n:
        print("  EVOLUTION DOES NOT BEAT THE TEXT-WRITING SEEDS IN EVERY RUN.")
    print(f"  evaluation failures over runs: {failures or 'none'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="customer_support")
    p.add_argument("--quick", action="store_true", help="generations 3, population 6, n 60")
    p.add_argument("--seeds", type=int, default=3, help="run seeds 0..SEEDS-1")
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--islands", type=int, default=2)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--probes", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.generations, args.population, args.n = 3, 6, 60

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    print(
        f"settings: space {args.space}, assess embedding, seeds {', '.join(TEXT_SEEDS)}, "
        f"generations {args.generations}, population {args.population}, islands "
        f"{args.islands}, n {args.n}, probes {args.probes}, workers {args.workers}, "
        f"run seeds 0..{args.seeds - 1}"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="embedding-evolution-") as tmp:
        runs = [one_run(s, args, Path(tmp), log) for s in range(args.seeds)]
    report(runs, args)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
