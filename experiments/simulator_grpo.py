"""Evidence: GRPO on held-out personas, before and after, for a model (default SmolLM2).

    python experiments/simulator_grpo.py [--model smollm2] [--lora] [--seeds 0 1 2]
        [--steps 30] [--out runs/simulator-grpo]

Personas: ``--personas`` uniform feasible personas from ``customer_support`` and
``mental_health_support`` (seeded), goals from the built-in template. For each seed,
:func:`personaevo.simulator.train_simulator` trains ``--model`` (``smollm2``, the packaged
SmolLM2-135M-Instruct; ``tiny`` for a quick check; with ``--lora`` a LoRA adapter, r 16)
with every reward (the uniform curriculum), holding out a quarter of the personas; then the
model before and
after training plays ``--conversations`` conversations with the *held-out* personas against
the scripted agent and :func:`personaevo.simulator.evaluate_simulators` scores both (the
rule judge; Q&A answered by the model itself). The first table gives mean ± sd over seeds
of each metric before, after and of the paired difference.

``--curriculum-steps`` (0 to skip) then trains once per schedule, moderate-first and
hardest-first, with seed 0, and scores both on the same held-out personas.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from personaevo.llm.corpus import sample_persona
from personaevo.personas import write_personas
from personaevo.simulator import (
    RuleJudge,
    ScriptedAgent,
    TrainConfig,
    evaluate_simulators,
    goals_for_profiles,
    load_goal_source,
    load_profiles,
    open_model,
    train_simulator,
)
from personaevo.simulator.evaluation import METRICS
from personaevo.simulator.training import resolve_model
from personaevo.spaces import load_space

SPACES = ("customer_support", "mental_health_support")


def write_population(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    spaces = [load_space(name) for name in SPACES]
    records = []
    for i in range(n):
        space = spaces[i % len(spaces)]
        records.append({"id": f"{space.name}-{i}", "traits": sample_persona(space, rng)})
    write_personas(path, records)


def train(args, personas: Path, out: Path, seed: int, curriculum: str, steps: int) -> Path:
    config = TrainConfig(
        model=args.model,
        lora=args.lora,
        personas=str(personas),
        out=str(out),
        steps=steps,
        group_size=args.group_size,
        prompts_per_step=args.prompts_per_step,
        learning_rate=args.lr,
        beta=args.beta,
        refresh_every=args.refresh_every,
        rollout_conversations=8,
        max_turns=args.turns,
        pool_size=32,
        max_completion_length=32,
        qa_questions=0,  # Q&A is trained on probe rows (a quarter of the pool) only
        curriculum=curriculum,
        held_out=0.25,
        save_steps=steps,
        seed=seed,
    )
    result = train_simulator(config, log=print)
    return Path(result.final_model)


def evaluate(args, out: Path, models: list[tuple[str, str]], seed: int) -> dict:
    profiles, _ = load_profiles(personas=out / "heldout.jsonl", seed=seed)
    goals, template = load_goal_source(None)
    pairs = list(zip(profiles, goals_for_profiles(profiles, goals, template, seed), strict=True))
    comparison, _ = evaluate_simulators(
        [(name, open_model(spec)) for name, spec in models],
        pairs,
        ScriptedAgent(refusal=0.2),
        RuleJudge(),
        conversations=args.conversations,
        max_turns=args.turns,
        seed=seed,
        qa_questions=1,
    )
    return comparison.model_dump(mode="json")


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, gemma3-270m, tiny, a folder")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (r 16)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--curriculum-steps", type=int, default=20)
    parser.add_argument("--personas", type=int, default=48)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--refresh-every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--out", default="runs/simulator-grpo")
    args = parser.parse_args()

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    personas = root / "personas.jsonl"
    write_population(personas, args.personas, seed=1234)
    base = str(resolve_model(args.model))
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        final = train(args, personas, root / f"seed{seed}", seed, "uniform", args.steps)
        trained = time.perf_counter() - t0
        result = evaluate(
            args, root / f"seed{seed}", [("before", base), ("after", str(final))], seed
        )
        result["train_seconds"] = round(trained, 1)
        runs.append(result)
        print(f"seed {seed}: trained in {trained:.0f} s")
    lines: list[str] = []
    if runs:
        lines += [
            f"GRPO on {args.model}{' (LoRA r 16)' if args.lora else ''}: {args.steps} steps x "
            f"{args.prompts_per_step} prompts x "
            f"{args.group_size} completions, lr {args.lr}, beta {args.beta}; held-out "
            f"personas, {args.conversations} conversations of up to {args.turns} user turns "
            f"per model; mean ± sd over seeds {args.seeds}",
            "",
            "| metric | before | after | after - before |",
            "|---|---|---|---|",
        ]
        for metric in METRICS:
            before = [r["models"][0]["metrics"][metric]["mean"] for r in runs]
            after = [r["models"][1]["metrics"][metric]["mean"] for r in runs]
            diff = [r["differences"][metric]["mean"] for r in runs]
            lines.append(f"| {metric} | {mean_sd(before)} | {mean_sd(after)} | {mean_sd(diff)} |")
        lines += ["", f"training seconds per seed: {[r['train_seconds'] for r in runs]}"]
    if args.curriculum_steps:
        models = [("before", base)]
        for schedule in ("moderate-first", "hardest-first"):
            out = root / f"curriculum-{schedule}"
            final = train(args, personas, out, 0, schedule, args.curriculum_steps)
            models.append((schedule, str(final)))
        result = evaluate(args, root / "curriculum-moderate-first", models, 0)
        lines += [
            "",
            f"Curriculum, seed 0, {args.curriculum_steps} steps each; mean [95% bootstrap CI]",
            "",
            "| metric | before | moderate-first | hardest-first |",
            "|---|---|---|---|",
        ]
        for metric in METRICS:
            cells = []
            for model in result["models"]:
                m = model["metrics"][metric]
                cells.append(
                    "n/a"
                    if m["mean"] is None
                    else f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
                )
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        (root / "curriculum.json").write_text(json.dumps(result, indent=2) + "\n")
    lines += ["", f"total {time.perf_counter() - started:.0f} s"]
    print("\n".join(lines))
    if runs:
        (root / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
    name = "results.md" if runs else "curriculum.md"
    (root / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
