"""Do coverage-oriented personas give more diverse simulated users than density-matched ones?

Two persona sets of the same size on one space (default ``customer_support``): the
coverage-oriented seed generator ``sobol`` (scrambled Sobol points on the feasible region)
and the statistical-matching baseline ``density_matched`` (kernel draws around the
space's reference; ``customer_support`` has declared marginals only, so it draws from
them). Each set is played by the same simulator model against the same agent and judge
(same seeds, one conversation per persona, ``--conversations`` per set), each
conversation becomes a behavioural fingerprint (:mod:`personaevo.simulator.behaviour`),
and the project's coverage metrics score the fingerprint sets on the one fingerprint
space. Trait-space metrics of the two persona sets are printed too, and the trait
fidelity of each set's users (:mod:`personaevo.simulator.trait_fidelity`).

Run: ``python experiments/behaviour_diversity.py --model tiny`` (about 1 minute on 2
cores with the tiny model; ``--model smollm2`` for the real model). Writes a JSON report
with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from personaevo.evaluate import generator_space, seed_generator_paths
from personaevo.llm import SamplingParams
from personaevo.metrics import score
from personaevo.personas import check_personas
from personaevo.programs import load_program
from personaevo.sandbox import Job, Sandbox
from personaevo.simulator import (
    RuleJudge,
    ScriptedAgent,
    Simulator,
    goals_for_profiles,
    load_goal_source,
    open_model,
    profile_from_persona,
    simulate,
)
from personaevo.simulator.behaviour import behaviour_rows, compare_behaviour
from personaevo.simulator.trait_fidelity import evaluate_trait_fidelity
from personaevo.spaces import load_space

SETS = {"coverage (sobol)": "sobol", "density-matched": "density_matched"}
TRAIT_METRICS = ("mc_coverage", "dispersion", "tway_coverage.2", "mean_pairwise_distance")


def personas_of(program: str, space, n: int, seed: int):
    """The valid personas of ``n`` from a seed generator (run in the sandbox)."""
    path = next(p for p in seed_generator_paths() if p.stem == program)
    job = Job(program=load_program(path), space=generator_space(space, None, seed=seed), n=n,
              seed=seed)  # fmt: skip
    with Sandbox(workers=1) as sandbox:
        (result,) = sandbox.map([job])
    if not result.ok:
        raise SystemExit(f"{program}: {result.failure}: {result.message}")
    return check_personas(result.personas, space).valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", help="simulator model spec")
    parser.add_argument("--space", default="customer_support")
    parser.add_argument("--conversations", type=int, default=40, help="personas per set")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args()

    space = load_space(args.space)
    goals, template = load_goal_source(None)
    llm = open_model(args.model)
    params = SamplingParams(max_tokens=48, temperature=0.7)
    records, trait_rows = {}, {}
    start = time.perf_counter()
    for label, program in SETS.items():
        personas = personas_of(program, space, args.conversations, args.seed)
        report = score(personas, space, seed=args.seed, n_probes=2000).flat()
        trait_rows[label] = {m: report[m] for m in TRAIT_METRICS}
        profiles = [profile_from_persona(p, space, args.seed) for p in personas]
        pairs = list(zip(profiles, goals_for_profiles(profiles, goals, template, args.seed),
                         strict=True))  # fmt: skip
        simulator = Simulator(llm, params)
        records[label] = simulate(
            simulator, ScriptedAgent(0.2), RuleJudge(), pairs, len(pairs), args.turns, args.seed
        )
        print(f"{label}: {len(pairs)} conversations played, {time.perf_counter() - start:.0f} s",
              flush=True)  # fmt: skip
    behaviour = compare_behaviour(records, seed=args.seed)
    fidelity = {
        label: evaluate_trait_fidelity(recs, space, folds=5, seed=args.seed)
        for label, recs in records.items()
    }
    seconds = time.perf_counter() - start
    print(f"model {args.model}, space {args.space}, {args.conversations} personas per set, "
          f"one conversation each, up to {args.turns} user turns, scripted agent, rule judge, "
          f"seed {args.seed}; {seconds:.0f} s")  # fmt: skip
    print("\ntrait space (the persona sets themselves):")
    for label, row in trait_rows.items():
        print(f"  {label:>18}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print("\nbehaviour space (fingerprints of the simulated users):")
    header, rows = behaviour_rows(behaviour)
    width = max(len(r[0]) for r in rows)
    print("  " + " | ".join([header[0].ljust(width), *header[1:]]))
    for row in rows:
        print("  " + " | ".join([row[0].ljust(width), *row[1:]]))
    print("\nfeature means:")
    for s in behaviour.sets:
        print(f"  {s.name:>18}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.feature_means.items()))
    print("\ntrait fidelity (balanced accuracy, personas held out; chance in brackets):")
    for label, found in fidelity.items():
        cells = [
            f"{a.axis} {a.balanced_accuracy:.2f} ({a.chance:.2f})"
            for a in found.axes
            if a.balanced_accuracy is not None
        ]
        print(f"  {label:>18}: " + ", ".join(cells))
    if args.json:
        out = {
            "model": args.model,
            "space": args.space,
            "trait_space": trait_rows,
            "behaviour": behaviour.model_dump(mode="json"),
            "trait_fidelity": {k: v.model_dump(mode="json") for k, v in fidelity.items()},
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
