"""Where does coverage matter? The rare-hit gap between density matching and coverage.

On spaces whose reference is a real survey table (``big_five``: psych::bfi, 2,568
respondents; ``general_public``: carData::GSSvocab, 27,359), the seed generators are
scored over a grid of set sizes ``n``, combination strengths ``t`` and bins per
continuous axis. The density-matching seed (``density_matched``: a respondent plus kernel
noise) is compared with the coverage-oriented ones (``sobol``, ``pairwise``, and
``uniform`` as the naive baseline). Per cell, over ``--seeds`` run seeds (mean), it
measures:

* ``rare``: rare t-way combinations reached / all rare ones (``reference.rare_hits_tway.t``);
* ``plausible rare``: the same, counting only personas whose every (t-1)-way
  combination is in the support, novel ones only
  (``reference.plausible_rare_hits_tway.t``);
* ``plausibility``: distinct plausible personas / n (``reference.plausibility_tway.t``);
* ``copies``: personas that copy a respondent / n.

The "gap" is coverage's value over density matching's, as a ratio. A ratio near 1 means
density matching already reaches what coverage does at that n, and coverage has nothing
to add there. ``--plot FILE.png`` draws the plausible-rare ratio against n, one panel per
space and t, one line per bins setting.

Run: ``python experiments/where_coverage_matters.py`` (about 5 minutes on 2 cores);
``--quick`` for n in {50, 200} and one seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits
from personaevo.spaces import ContinuousAxis, TraitSpace, load_space

SPACES = ("big_five", "general_public")
GENERATORS = ("density_matched", "sobol", "pairwise", "uniform")
COVERAGE = ("sobol", "pairwise")
MEASURES = ("rare", "plausible_rare", "plausibility", "copies")


def with_bins(space: TraitSpace, bins: int) -> TraitSpace:
    """``space`` with ``bins`` bins on every continuous axis."""
    data = space.model_dump(by_alias=True, exclude_none=True)
    for axis, original in zip(data["axes"], space.axes, strict=True):
        if isinstance(original, ContinuousAxis):
            axis["bins"] = bins
    data["name"] = f"{space.name}-bins{bins}"
    return TraitSpace.model_validate(data)


def measures(report, t: int) -> dict[str, float]:
    flat = report.flat()
    return {
        "rare": flat[f"reference.rare_hits_tway.{t}"],
        "plausible_rare": flat[f"reference.plausible_rare_hits_tway.{t}"],
        "plausibility": flat[f"reference.plausibility_tway.{t}"],
        "copies": flat["reference.copy_share"],
    }


def run_grid(args, log) -> list[dict]:
    programs = [p for p in seed_generator_paths() if p.stem in GENERATORS]
    rows = []
    limits = SandboxLimits.for_personas(max(args.n), 120.0)
    with Sandbox(workers=args.workers, limits=limits) as sandbox:
        for space_name in args.spaces:
            base = load_space(space_name)
            for bins in args.bins:
                space = with_bins(base, bins)
                reference = ReferencePopulation.default_for(space)
                for n in args.n:
                    for seed in range(args.seeds):
                        evaluations = evaluate_programs(
                            programs, space, n=n, seed=seed, reference=reference,
                            sandbox=sandbox, n_probes=200,
                            limits=SandboxLimits.for_personas(n, 120.0),
                        )  # fmt: skip
                        for path, e in zip(programs, evaluations, strict=True):
                            if e.report is None:
                                log(f"  {space_name} bins {bins} n {n} {path.stem}: {e.failure}")
                                continue
                            for t in args.t:
                                rows.append(
                                    {
                                        "space": space_name, "bins": bins, "n": n, "t": t,
                                        "seed": seed, "generator": path.stem,
                                        **measures(e.report, t),
                                    }
                                )  # fmt: skip
                    log(f"  {space_name} bins {bins} n {n}: done")
    return rows


def mean_of(rows: list[dict], **where) -> dict[str, float]:
    chosen = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return {m: float(np.mean([r[m] for r in chosen])) for m in MEASURES} if chosen else {}


def print_tables(rows: list[dict], args) -> None:
    for space_name in args.spaces:
        for t in args.t:
            print(f"\n=== {space_name}, t = {t} (mean of {args.seeds} seeds) ===")
            print(
                f"{'bins':>4} {'n':>5}  {'density: rare / pl.rare / plaus / copies':>42}  "
                f"{'best coverage: rare / pl.rare / plaus':>38}  {'pl.rare ratio':>13}"
            )
            for bins in args.bins:
                for n in args.n:
                    d = mean_of(rows, space=space_name, t=t, bins=bins, n=n,
                                generator="density_matched")  # fmt: skip
                    cov = {
                        g: mean_of(rows, space=space_name, t=t, bins=bins, n=n, generator=g)
                        for g in COVERAGE
                    }
                    best = max(cov, key=lambda g: cov[g].get("plausible_rare", -1))
                    c = cov[best]
                    if not d or not c:
                        continue
                    ratio = (
                        c["plausible_rare"] / d["plausible_rare"]
                        if d["plausible_rare"]
                        else float("inf")
                    )
                    print(
                        f"{bins:>4} {n:>5}  {d['rare']:10.3f} {d['plausible_rare']:8.3f} "
                        f"{d['plausibility']:7.3f} {d['copies']:7.3f}    "
                        f"{best:>8}: {c['rare']:6.3f} {c['plausible_rare']:8.3f} "
                        f"{c['plausibility']:7.3f}  {ratio:10.2f}x"
                    )


def plot(rows: list[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(args.t), len(args.spaces), figsize=(5 * len(args.spaces), 3.6 * len(args.t)),
        squeeze=False,
    )  # fmt: skip
    for j, space_name in enumerate(args.spaces):
        for i, t in enumerate(args.t):
            ax = axes[i][j]
            for bins in args.bins:
                ratios = []
                for n in args.n:
                    d = mean_of(rows, space=space_name, t=t, bins=bins, n=n,
                                generator="density_matched")  # fmt: skip
                    c = max(
                        (mean_of(rows, space=space_name, t=t, bins=bins, n=n, generator=g)
                         for g in COVERAGE),
                        key=lambda m: m.get("plausible_rare", -1),
                    )  # fmt: skip
                    ratios.append(
                        c["plausible_rare"] / d["plausible_rare"] if d["plausible_rare"] else np.nan
                    )
                ax.plot(args.n, ratios, marker="o", label=f"{bins} bins")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_title(f"{space_name}, t = {t}")
            ax.set_xlabel("personas n")
            ax.set_ylabel("plausible rare hits:\nbest coverage / density")
            ax.legend(fontsize=8)
    fig.suptitle("Where coverage adds rare-and-plausible reach over density matching")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spaces", nargs="+", default=list(SPACES))
    p.add_argument("--n", nargs="+", type=int, default=[50, 100, 200, 500, 1000])
    p.add_argument("--t", nargs="+", type=int, default=[2, 3])
    p.add_argument("--bins", nargs="+", type=int, default=[3, 4, 5])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--plot", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.seeds = [50, 200], 1

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    start = time.monotonic()
    rows = run_grid(args, log)
    print_tables(rows, args)
    if args.plot:
        plot(rows, args, args.plot)
        print(f"\nplot written to {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\ntotal {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
