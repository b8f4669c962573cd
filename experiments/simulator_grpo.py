"""Evidence: GRPO on held-out personas, before and after, for a model (default SmolLM2),
and the curriculum schedules compared.

    python experiments/simulator_grpo.py [--model smollm2|tiny|DIR] [--lora] [--seeds 0 1 2]
        [--steps 30] [--curriculum-steps 20] [--curriculum-seeds 0 1 2]
        [--units conversation turn] [--out runs/simulator-grpo]

Personas: ``--personas`` uniform feasible personas from ``customer_support`` and
``mental_health_support`` (seeded), goals from the built-in template. For each seed,
:func:`personaevo.simulator.train_simulator` trains ``--model`` (``smollm2``, the packaged
SmolLM2-135M-Instruct; ``tiny`` for a quick check; with ``--lora`` a LoRA adapter, r 16)
with every reward (the uniform curriculum), holding out the default share of the personas
(a quarter, :data:`personaevo.simulator.DEFAULT_HELD_OUT`); then the model before and
after training plays ``--conversations`` conversations with exactly the *held-out*
personas and goals (:func:`personaevo.simulator.held_out_pairs`) against the scripted
agent and :func:`personaevo.simulator.evaluate_simulators` scores both (the rule judge;
Q&A answered by the model itself). The first table gives mean ± sd over seeds of each
metric before, after and of the paired difference.

``--curriculum-steps`` (0 to skip) then trains once per schedule (uniform,
moderate-first, hardest-first) for each of ``--curriculum-seeds``. A seed's three runs
share their held-out split (it depends on the seed only), and the three models play the
same held-out conversations. The second table gives, per schedule, mean ± sd over seeds,
and the paired difference from uniform (per seed, the mean over conversations of
schedule minus uniform; then mean ± sd over seeds). ``--seeds`` with no value skips the
first part.

``--units`` (default ``conversation``, the library's default) trains once per GRPO unit
and seed (``turn``: one user turn per sample; ``conversation``: whole conversations with
trajectory rewards, ``docs/simulator-training.md``); every trained model plays the same
held-out conversations, and with two units the first table adds the paired difference
second minus first (per seed, the mean over conversations; then mean ± sd over seeds).
The curriculum runs use the first unit. ``--conversations 0`` skips evaluation, to time
training alone (e.g. ``--steps 1 --model smollm2 --lora``): each run's training
seconds, its first pool refresh's seconds and seconds per step without that refresh are
printed and written to ``timings.json``.
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
    held_out_pairs,
    open_model,
    train_simulator,
)
from personaevo.simulator.curriculum import SCHEDULES
from personaevo.simulator.evaluation import METRICS
from personaevo.simulator.training import resolve_model
from personaevo.spaces import load_space

SPACES = ("customer_support", "mental_health_support")
TIMINGS: list[dict] = []  # one entry per training run


def write_population(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    spaces = [load_space(name) for name in SPACES]
    records = []
    for i in range(n):
        space = spaces[i % len(spaces)]
        records.append({"id": f"{space.name}-{i}", "traits": sample_persona(space, rng)})
    write_personas(path, records)


def train(
    args, personas: Path, out: Path, seed: int, curriculum: str, steps: int, unit: str
) -> Path:
    config = TrainConfig(
        model=args.model,
        lora=args.lora,
        unit=unit,
        personas=str(personas),
        out=str(out),
        steps=steps,
        group_size=args.group_size,
        prompts_per_step=args.prompts_per_step,
        learning_rate=args.lr,
        beta=args.beta,
        refresh_every=args.refresh_every,
        rollout_conversations=args.rollout_conversations,
        max_turns=args.turns,
        pool_size=32,
        max_completion_length=args.max_tokens,
        qa_questions=0,  # Q&A is trained on probe rows (a quarter of the pool) only
        qa_prompt_share=args.probe_share,
        curriculum=curriculum,
        save_steps=steps,
        seed=seed,
    )
    result = train_simulator(config, log=print)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    first = summary["refreshes"][0]["seconds"] if summary["refreshes"] else 0.0
    times = {
        "unit": unit,
        "seed": seed,
        "curriculum": curriculum,
        "train_seconds": result.seconds,
        "first_refresh_seconds": first,
        "seconds_per_step": round((result.seconds - first) / max(1, result.steps), 2),
    }
    TIMINGS.append(times)
    print(f"timing: {times}")
    return Path(result.final_model)


def evaluate(args, out: Path, models: list[tuple[str, str]], seed: int) -> dict:
    pairs = held_out_pairs(out)
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


def label(args) -> str:
    """The trained model as the tables name it."""
    return f"{args.model}{' (LoRA r 16)' if args.lora else ''}"


def paired_mean(a: list[float | None], b: list[float | None]) -> float | None:
    """Mean of ``a - b`` over the conversations where both have a value."""
    both = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return statistics.mean(both) if both else None


def consistency(args, root: Path, personas: Path, base: str) -> tuple[list[str], list[dict]]:
    """Before and after uniform training with each unit, per seed (the first table)."""
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        models = [("before", base)]
        for unit in args.units:
            out = root / (f"seed{seed}" if len(args.units) == 1 else f"{unit}-seed{seed}")
            models.append(
                (unit, str(train(args, personas, out, seed, "uniform", args.steps, unit)))
            )
        trained = time.perf_counter() - t0
        print(f"seed {seed}: trained in {trained:.0f} s")
        if not args.conversations:
            continue
        held = root / (f"seed{seed}" if len(args.units) == 1 else f"{args.units[0]}-seed{seed}")
        result = evaluate(args, held, models, seed)
        result["train_seconds"] = round(trained, 1)
        runs.append(result)
    if not runs:
        return [], runs
    units = args.units
    head = ["before", *(f"after {u}" for u in units), *(f"{u} - before" for u in units)]
    if len(units) == 2:
        head.append(f"{units[1]} - {units[0]}")
    lines = [
        f"GRPO on {label(args)}: {args.steps} steps x {args.prompts_per_step} prompts x "
        f"{args.group_size} completions, lr {args.lr}, beta {args.beta}; held-out "
        f"personas, {args.conversations} conversations of up to {args.turns} user turns "
        f"per model; mean ± sd over seeds {args.seeds}; differences paired by conversation",
        "",
        "| metric | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for metric in METRICS:
        per = [
            [r["models"][k]["per_conversation"][metric] for r in runs]
            for k in range(len(units) + 1)
        ]
        cells = [
            mean_sd([r["models"][k]["metrics"][metric]["mean"] for r in runs])
            for k in range(len(units) + 1)
        ]
        pairs = [(k, 0) for k in range(1, len(units) + 1)] + ([(2, 1)] if len(units) == 2 else [])
        for k, j in pairs:
            cells.append(mean_sd([paired_mean(a, b) for a, b in zip(per[k], per[j], strict=True)]))
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines += ["", f"training seconds per seed: {[r['train_seconds'] for r in runs]}"]
    return lines, runs


def curricula(args, root: Path, personas: Path, base: str) -> tuple[list[str], list[dict]]:
    """Uniform, moderate-first and hardest-first over seeds (the second table)."""
    per_seed = []
    for seed in args.curriculum_seeds:
        models, seconds = [("before", base)], {}
        for schedule in SCHEDULES:
            t0 = time.perf_counter()
            out = root / f"curriculum-{schedule}-seed{seed}"
            final = train(args, personas, out, seed, schedule, args.curriculum_steps, args.units[0])
            seconds[schedule] = round(time.perf_counter() - t0, 1)
            models.append((schedule, str(final)))
        result = evaluate(args, root / f"curriculum-uniform-seed{seed}", models, seed)
        result["train_seconds"] = seconds
        per_seed.append(result)
    header = " | ".join(SCHEDULES)
    lines = [
        f"Curriculum on {label(args)}: {args.curriculum_steps} steps per schedule, seeds "
        f"{args.curriculum_seeds}; mean ± sd over seeds (paired difference from uniform)",
        "",
        f"| metric | before | {header} | moderate-first - uniform | hardest-first - uniform |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric in METRICS:
        cells = []
        for k in range(len(SCHEDULES) + 1):
            cells.append(mean_sd([r["models"][k]["metrics"][metric]["mean"] for r in per_seed]))
        for schedule in SCHEDULES[1:]:
            k = SCHEDULES.index(schedule) + 1
            diffs = [
                paired_mean(
                    r["models"][k]["per_conversation"][metric],
                    r["models"][1]["per_conversation"][metric],
                )
                for r in per_seed
            ]
            cells.append(mean_sd(diffs))
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    seconds = [r["train_seconds"] for r in per_seed]
    lines += ["", f"training seconds per seed and schedule: {seconds}"]
    return lines, per_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, gemma3-270m, tiny, a folder")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (r 16)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument(
        "--units", nargs="+", choices=["conversation", "turn"], default=["conversation"]
    )
    parser.add_argument("--rollout-conversations", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32, help="new tokens per user line")
    parser.add_argument("--probe-share", type=float, default=0.25, help="Q&A probe rows")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--curriculum-steps", type=int, default=20)
    parser.add_argument("--curriculum-seeds", type=int, nargs="*", default=[0, 1, 2])
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
    lines, runs = consistency(args, root, personas, base)
    if runs:
        (root / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
    if args.curriculum_steps and args.curriculum_seeds:
        more, per_seed = curricula(args, root, personas, base)
        lines += ["", *more] if lines else more
        (root / "curriculum.json").write_text(json.dumps(per_seed, indent=2) + "\n")
    (root / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    lines += ["", f"total {time.perf_counter() - started:.0f} s"]
    print("\n".join(lines))
    (root / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
