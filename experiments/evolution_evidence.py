"""Does evolution beat its seeds, and random search? Hypervolume evidence per space.

For each built-in space (``customer_support``, ``big_five`` whose reference is the real
``psych::bfi`` survey, ``mental_health_support``) and each run seed ``s`` in
``0..seeds-1``, three point sets are gathered in the objective space of the run (the
default objectives with a reference: ``reference.support_coverage_tway.3``,
``reference.rare_hits_tway.3``, ``reference.plausibility_tway.3``, all higher-better):

* **front**: the final Pareto front (``evo.front``) of a small ``run_evolution`` run
  (``--generations/--population/--islands/--n/--probes/--workers``; run seed ``s``);
* **seeds**: the seed generators' points (evaluated by the same run);
* **evolved**: the non-dominated set of the programs the run evaluated *other than the
  seeds* (what evolution itself found; the front may consist of seeds only);
* **random**: random search with the same number of evaluations as the run
  (``evo.evaluations``, seeds included): the seeds' evaluations (reused from the run's
  cache: same space, n and seed, so the same result) plus repeatedly mutating a
  uniformly drawn seed generator with :func:`personaevo.operators.mutate` (numpy RNG
  seeded ``10_000 + s``), evaluating every distinct ok mutant on a fresh
  :class:`RayEvaluator` with the run's settings, in batches of ``2 * population``,
  then taking the non-dominated set of everything.

Hypervolume. Points are fitness vectors (larger is better; a lower-is-better metric
would already be negated by the run). Failed evaluations (fitness -1e9) are dropped.
For one (space, run seed) every set is normalised with the same per-objective scale:
``v / best`` where ``best`` is the largest value of that objective over *all* points of
*all* methods for that (space, seed). The normalised points lie in [0, 1] (the default
objectives are shares and counts, so non-negative), are negated for
``moocore.hypervolume`` (minimisation) and measured against the reference point 0
(the origin of the maximisation problem). HV is therefore the share of the box
``[0, best_1] x ... x [0, best_k]`` dominated by the set: 1.0 would be one program at the
best value of every objective; a point that scores 0 on any objective adds nothing. If
some objective had negative values the scale falls back to min-max over the pooled
points (``(v - min) / (max - min)``), again with reference point 0. HVs are comparable
between methods for the same (space, seed), and are averaged over seeds as shares.

"Best evolved program": among the run's non-seed programs on the front (or, when the
front has none, among all its non-seed ok programs), the one with the largest sum of
normalised objectives; its raw objective values are printed next to each seed's.

Run: ``python experiments/evolution_evidence.py`` (``--quick`` for a smaller run;
``--spaces customer_support`` to restrict). Ray is started by each run itself; runs
are sequential, never two Rays at once.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import moocore
import numpy as np

from personaevo.evolution import EvolveConfig, RayEvaluator, run_evolution
from personaevo.evolution.loop import objective_values
from personaevo.operators import mutate

SPACES = ["customer_support", "big_five", "mental_health_support"]
FAILED = -1e8  # fitness values at or below this mark a failed evaluation


def nondominated(points: list[tuple[float, ...]]) -> np.ndarray:
    """Non-dominated subset (maximisation) of finite, non-failed points."""
    pts = np.array([p for p in points if min(p) > FAILED], dtype=float)
    if len(pts) == 0:
        return pts.reshape(0, 0)
    keep = moocore.is_nondominated(pts, maximise=True)
    return pts[keep]


def scales(all_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, span) per objective: v -> (v - offset) / span."""
    lo, hi = all_points.min(axis=0), all_points.max(axis=0)
    offset = np.where(lo < 0, lo, 0.0)
    span = hi - offset
    span = np.where(span > 0, span, 1.0)
    return offset, span


def hypervolume(points: np.ndarray, offset: np.ndarray, span: np.ndarray) -> float:
    if points.size == 0:
        return 0.0
    norm = np.clip((points - offset) / span, 0.0, 1.0)
    return float(moocore.hypervolume(-norm, ref=np.zeros(norm.shape[1])))


def random_search(evo, config: EvolveConfig, space, reference, seed: int, log) -> list:
    """Fitness vectors of ``evo.evaluations`` evaluations: seeds + random seed mutants."""
    budget = evo.evaluations
    points = [objective_values(evo.cache[s.key], evo.objectives) for s in evo.seeds]
    seen = {s.key for s in evo.seeds}
    rng = np.random.default_rng(10_000 + seed)
    evaluator = RayEvaluator.from_config(config, space, reference)
    evaluator.start()
    try:
        remaining = budget - len(points)
        while remaining > 0:
            batch, tries = [], 0
            while len(batch) < min(2 * config.population, remaining) and tries < 1000:
                tries += 1
                parent = evo.seeds[int(rng.integers(len(evo.seeds)))]
                result = mutate(parent.source, rng)
                if result.ok and result.child_hash not in seen:
                    seen.add(result.child_hash)
                    batch.append((result.child_hash, result.source, f"rs-{result.child_hash[:8]}"))
            if not batch:
                log("random search: no new mutant in 1000 tries; stopping early")
                break
            done = evaluator.evaluate(batch)
            points += [objective_values(done[key], evo.objectives) for key, _, _ in batch]
            remaining -= len(batch)
    finally:
        evaluator.close()
    return points


def one_run(space_name: str, seed: int, args, workdir: Path, log) -> dict:
    config = EvolveConfig(
        space=space_name,
        generations=args.generations,
        population=args.population,
        islands=args.islands,
        workers=args.workers,
        n=args.n,
        probes=args.probes,
        seed=seed,
        out=str(workdir / f"{space_name}-{seed}"),
    )
    t0 = time.monotonic()
    evo, _rundir, (space, reference) = run_evolution(config, log=lambda s: None)
    t_evo = time.monotonic() - t0
    seed_keys = {s.key for s in evo.seeds}
    front = [ind.fitness.values for ind in evo.front]
    seeds = [objective_values(evo.cache[s.key], evo.objectives) for s in evo.seeds]
    evolved_all = {
        key: objective_values(ev, evo.objectives)
        for key, ev in evo.cache.items()
        if key not in seed_keys
    }
    t1 = time.monotonic()
    rs = random_search(evo, config, space, reference, seed, log)
    t_rs = time.monotonic() - t1

    sets = {
        "front": nondominated(front),
        "evolved": nondominated(list(evolved_all.values())),
        "seeds": nondominated(seeds),
        "random": nondominated(rs),
    }
    pooled = np.vstack([s for s in sets.values() if s.size])
    offset, span = scales(pooled)
    hv = {name: hypervolume(pts, offset, span) for name, pts in sets.items()}

    def normsum(values) -> float:
        return float(np.sum((np.asarray(values) - offset) / span))

    front_evolved = [ind for ind in evo.front if ind.key not in seed_keys]
    if front_evolved:
        best = max(front_evolved, key=lambda ind: normsum(ind.fitness.values))
        best_values, best_on_front = best.fitness.values, True
    else:
        ok = [v for v in evolved_all.values() if min(v) > FAILED]
        best_values = max(ok, key=normsum) if ok else tuple([math.nan] * len(evo.objectives))
        best_on_front = False
    seed_values = {s.name: objective_values(evo.cache[s.key], evo.objectives) for s in evo.seeds}
    best_seed = max(seed_values.values(), key=normsum)
    log(
        f"  {space_name} seed {seed}: evals {evo.evaluations} (random {len(rs)}), "
        f"front {len(evo.front)} ({len(front_evolved)} evolved), "
        f"HV front {hv['front']:.4f} evolved {hv['evolved']:.4f} seeds {hv['seeds']:.4f} "
        f"random {hv['random']:.4f}; {t_evo:.0f} s evolution + {t_rs:.0f} s random search"
    )
    return {
        "objectives": evo.objectives,
        "hv": hv,
        "best": best_values,
        "best_on_front": best_on_front,
        "best_normsum": normsum(best_values),
        "best_seed_normsum": normsum(best_seed),
        "seeds": seed_values,
        "front_evolved": len(front_evolved),
        "front_size": len(evo.front),
        "evaluations": evo.evaluations,
        "failures": dict(evo.failures),
        "copying": sum(
            bool(e.report and e.report.reference and e.report.reference.copies)
            for e in evo.cache.values()
        ),
        "short": sum(
            e.ok and e.n_returned is not None and e.n_returned < e.n for e in evo.cache.values()
        ),
        "seconds": t_evo + t_rs,
    }


def ms(values) -> str:
    arr = np.array(values, dtype=float)
    if len(arr) > 1:
        return f"{arr.mean():.4g} ± {arr.std(ddof=1):.2g}"
    return f"{arr.mean():.4g}"


def report(space_name: str, runs: list[dict]) -> None:
    objectives = runs[0]["objectives"]
    print(
        f"\n=== {space_name}: {len(runs)} run seeds, "
        f"{ms([r['evaluations'] for r in runs])} evaluations per run ==="
    )
    print("Hypervolume (share of the per-seed best-value box; mean ± sd over seeds)")
    for name in ("front", "evolved", "seeds", "random"):
        label = {
            "front": "final Pareto front",
            "evolved": "evolved only (non-seed programs)",
            "seeds": "seed generators",
            "random": "random search (same evals)",
        }[name]
        print(f"  {label:36s} {ms([r['hv'][name] for r in runs])}")
    short = [o.replace("reference.", "") for o in objectives]
    width = max(22, *(len(s) + 2 for s in short))
    print("Objectives (raw values; mean ± sd over seeds)")
    print(f"  {'program':24s}" + "".join(f"{s:>{width}s}" for s in short))
    rows = [("best evolved", [r["best"] for r in runs])]
    for seed_name in runs[0]["seeds"]:
        rows.append((seed_name, [r["seeds"][seed_name] for r in runs]))
    for label, vectors in rows:
        arr = np.array(vectors, dtype=float)
        cells = [ms(arr[:, j]) for j in range(len(objectives))]
        print(f"  {label:24s}" + "".join(f"{c:>{width}s}" for c in cells))
    # plain verdicts
    beats = sum(r["hv"]["evolved"] > r["hv"]["seeds"] + 1e-12 for r in runs)
    gains = sum(r["hv"]["front"] > r["hv"]["seeds"] + 1e-12 for r in runs)
    rs_wins = sum(r["hv"]["front"] > r["hv"]["random"] + 1e-12 for r in runs)
    best_better = sum(r["best_normsum"] > r["best_seed_normsum"] + 1e-12 for r in runs)
    on_front = sum(r["front_evolved"] > 0 for r in runs)
    n = len(runs)
    print("Verdict:")
    print(f"  evolved programs on the final front in {on_front}/{n} runs")
    print(f"  front HV > seeds' HV (evolution added dominated volume) in {gains}/{n} runs")
    print(f"  evolved-only HV > seeds' HV in {beats}/{n} runs")
    print(f"  best evolved program's normalised objective sum > best seed's in {best_better}/{n}")
    print(f"  front HV > random-search HV in {rs_wins}/{n} runs")
    if gains == 0:
        print("  EVOLUTION DOES NOT BEAT THE SEEDS: the front is no better than the seed set.")
    elif best_better < n or beats < n:
        print("  Evolution does not beat the best seed in every run (see counts above).")
    failures = {}
    for r in runs:
        for k, v in r["failures"].items():
            failures[k] = failures.get(k, 0) + v
    print(f"  evaluation failures over runs: {failures or 'none'}")
    copying = sum(r["copying"] for r in runs)
    print(f"  evaluations with personas that copy a respondent (not scored): {copying}")
    short = sum(r["short"] for r in runs)
    print(f"  scored evaluations that returned fewer than n (missing ones invalid): {short}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="generations 3, population 6, n 60")
    p.add_argument("--spaces", nargs="+", default=SPACES)
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

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    print(
        f"settings: generations {args.generations}, population {args.population}, "
        f"islands {args.islands}, n {args.n}, probes {args.probes}, workers {args.workers}, "
        f"run seeds 0..{args.seeds - 1}"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evo-evidence-") as tmp:
        for space_name in args.spaces:
            runs = [one_run(space_name, s, args, Path(tmp), log) for s in range(args.seeds)]
            report(space_name, runs)
            sys.stdout.flush()
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
