"""``personaevo simulate``, ``train-simulator`` and ``eval-simulator``: user simulators."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.table import Table

from personaevo.cli._common import MODEL_HELP, console, say, write_json
from personaevo.cli._options import config_from_options, option_name
from personaevo.cli._types import (
    float_at_least,
    float_in,
    int_at_least,
    positive_float,
    seed_number,
    share,
)
from personaevo.errors import InputError, not_a_file
from personaevo.llm.config import default_model
from personaevo.simulator.heldout import DEFAULT_HELD_OUT


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _weights(value: str | None) -> dict[str, float]:
    out = {}
    for item in _csv(value):
        name, sep, weight = item.partition("=")
        try:
            out[name] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not math.isfinite(out[name]):
            raise InputError(
                f"--reward-weights: expected NAME=WEIGHT (a finite number), got {item!r}"
            )
    return out


def _pairs_and_space(args: argparse.Namespace):
    """(profile, goal) pairs and the personas' space (None when unknown): a training run's
    held-out ones (``--training-run``, or ``--personas`` naming a training run's
    ``heldout.jsonl``; the space from ``--space``), else the personas of ``--personas`` or
    ``--run`` with goals from ``--goals``."""
    from personaevo.simulator import goals_for_profiles, load_goal_source, load_profiles
    from personaevo.simulator.heldout import held_out_pairs, is_training_run
    from personaevo.spaces import resolve_space

    training_run = getattr(args, "training_run", None)
    if training_run is None and args.personas is not None and is_training_run(args.personas):
        training_run = args.personas
    if training_run is not None:
        if args.goals is not None:
            raise InputError(
                f"--goals: {training_run} is a training run; its held-out personas come with "
                "the goals training held out (leave --goals out)"
            )
        pairs = held_out_pairs(training_run)
        console.print(
            f"{len(pairs)} held-out personas of the training run {training_run}, each with "
            "its held-out goal"
        )
        return pairs, resolve_space(args.space) if args.space else None
    profiles, space = load_profiles(args.personas, args.run, args.space, args.seed, log=say)
    goals, template = load_goal_source(args.goals)
    pairs = zip(profiles, goals_for_profiles(profiles, goals, template, args.seed), strict=True)
    return list(pairs), space


def _pairs(args: argparse.Namespace):
    return _pairs_and_space(args)[0]


def _planner(args: argparse.Namespace):
    from personaevo.simulator import IntentPlanner
    from personaevo.simulator.simulator import parse_intents

    return IntentPlanner(parse_intents(_csv(args.intents), "--intents"))


def cmd_simulate(args: argparse.Namespace) -> int:
    from personaevo.llm import SamplingParams
    from personaevo.simulator import Simulator, simulate, write_records
    from personaevo.simulator.models import check_model_spec, open_agent, open_judge, open_model

    check_model_spec(args.model)
    planner = _planner(args)
    pairs = _pairs(args)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    simulator = Simulator(open_model(args.model), params, planner=planner)
    agent = open_agent(args.agent, args.agent_refusal)
    judge = open_judge(args.judge)
    records = simulate(
        simulator, agent, judge, pairs, args.conversations, args.turns, seed=args.seed
    )
    write_records(args.out, records)
    stops = sum(r.stop_reason == "stop_marker" for r in records)
    mean_alignment = sum(r.alignment for r in records) / len(records)
    first = records[0]
    console.print(f"[bold]{first.id}[/bold] ({first.goal.id})")
    for turn in first.turns:
        label = f"user/{turn.intent}" if turn.role == "user" else "agent"
        console.print(f"  {label:>22}: {turn.text}", markup=False)
    console.print(
        f"{len(records)} conversations, {stops} ended with the stop marker, mean goal "
        f"alignment {mean_alignment:.3f}, unreadable judge verdicts {judge.tally.text()}; "
        f"written to {args.out}"
    )
    return 0


TRAIN_OPTIONS = {
    "learning_rate": "--lr",
    "max_completion_length": "--max-tokens",
    "max_turns": "--turns",
}
"""The ``TrainConfig`` fields whose option is not named after them (``--field-name``)."""


def cmd_train_simulator(args: argparse.Namespace) -> int:
    from personaevo.simulator.training import TrainConfig, train_simulator

    if args.resume:
        config = TrainConfig.load(args.resume)
        if args.steps:
            config = config.model_copy(update={"steps": args.steps})
    else:
        base = {}
        if args.config:
            path = Path(args.config)
            problem = not_a_file(path, "training configuration")
            if problem:
                raise InputError(f"{path}: {problem}")
            base = json.loads(path.read_text(encoding="utf-8"))
        options = {
            "model": args.model,
            "personas": args.personas,
            "run": args.run,
            "n_per_program": args.n_per_program,
            "space": args.space,
            "goals": args.goals,
            "out": args.out,
            "steps": args.steps,
            "unit": args.unit,
            "lora": args.lora or None,
            "group_size": args.group_size,
            "prompts_per_step": args.prompts_per_step,
            "loss_type": args.loss_type,
            "beta": args.beta,
            "learning_rate": args.lr,
            "max_completion_length": args.max_tokens,
            "refresh_every": args.refresh_every,
            "rollout_conversations": args.rollout_conversations,
            "max_turns": args.turns,
            "curriculum": args.curriculum,
            "held_out": args.held_out,
            "rewards": _csv(args.rewards) or None,
            "reward_weights": _weights(args.reward_weights) or None,
            "intents": _csv(args.intents) or None,
            "vllm": args.vllm,
            "agent": args.agent,
            "judge": args.judge,
            "seed": args.seed,
        }
        given = {k: v for k, v in options.items() if v is not None}
        merged = {**base, **given}
        config = config_from_options(
            TrainConfig,
            merged,
            {field: TRAIN_OPTIONS.get(field, option_name(field)) for field in given},
            source=args.config,
        )
    result = train_simulator(config, resume=bool(args.resume), log=console.print)
    table = Table(title=f"rewards, first vs last logged step ({result.steps} steps)")
    for column in ("reward", "first", "last", "unreadable judge verdicts, all steps"):
        table.add_column(column)
    for name, first in result.first_rewards.items():
        count = result.judgements.get(name)
        unreadable = count.text() if count is not None else "-"
        table.add_row(name, f"{first:.3f}", f"{result.last_rewards[name]:.3f}", unreadable)
    console.print(table)
    if result.program_problems:
        console.print(
            f"{len(result.program_problems)} front programs failed (listed above and in "
            f"{Path(result.out) / 'summary.json'} under programs)"
        )
    console.print(
        f"model written to {result.final_model}; held-out personas in "
        f"{Path(result.out) / 'heldout.jsonl'} (evaluate them with eval-simulator "
        f"--training-run {result.out}); {result.seconds:.0f} s"
    )
    return 0


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def cmd_eval_simulator(args: argparse.Namespace) -> int:
    from personaevo.llm import SamplingParams
    from personaevo.simulator import write_records
    from personaevo.simulator.behaviour import behaviour_rows
    from personaevo.simulator.evaluation import comparison_rows
    from personaevo.simulator.independent import (
        agent_rows,
        evaluate_independently,
        fidelity_rows,
        heldout_rows,
    )
    from personaevo.simulator.models import (
        check_heldout_judge,
        check_model_spec,
        open_agent,
        open_judge,
        open_model,
    )
    from personaevo.simulator.trait_fidelity import TraitClassifier, fit_trait_classifier

    for spec in args.model:
        check_model_spec(spec)
    agent_specs = _csv(args.agent)
    if not agent_specs:
        raise InputError("--agent: give 'scripted', a model spec or 'llm:SPEC', comma-separated")
    for spec in agent_specs:
        if spec != "scripted":
            check_model_spec(spec.removeprefix("llm:"))
    if args.heldout_judge:
        check_model_spec(args.heldout_judge)
        check_heldout_judge(args.heldout_judge, list(args.model))
    planner = _planner(args)
    pairs, space = _pairs_and_space(args)
    if args.save_trait_classifier and space is None:
        raise InputError("--save-trait-classifier needs the personas' space (--space or --run)")
    classifier = TraitClassifier.load(args.trait_classifier) if args.trait_classifier else None
    models = [(spec, open_model(spec)) for spec in args.model]
    report, transcripts = evaluate_independently(
        models,
        pairs,
        [open_agent(spec, args.agent_refusal) for spec in agent_specs],
        open_judge(args.judge),
        heldout_judge=open_judge(args.heldout_judge) if args.heldout_judge else None,
        space=None if args.no_trait_fidelity else space,
        conversations=args.conversations,
        max_turns=args.turns,
        seed=args.seed,
        qa_questions=args.qa_questions,
        planner=planner,
        params=SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature),
        trait_classifier=classifier,
    )
    for comparison in report.comparisons:
        header, rows = comparison_rows(comparison)
        _print_table(
            f"{args.conversations} conversations per model, up to {args.turns} user turns, "
            f"judge {comparison.judge}, agent {comparison.agent}; mean [95% CI, personas "
            "resampled]; unreadable: judge replies neither yes nor no, left out of the means",
            header,
            rows,
        )
    if len(report.comparisons) > 1:
        header, rows = agent_rows(report)
        _print_table(
            "the same simulators against each agent (the scripted agent reads the goal state, "
            "an LLM agent sees only the conversation and the domain); mean [95% CI]",
            header,
            rows,
        )
    if report.heldout:
        header, rows = heldout_rows(report)
        _print_table(
            f"held-out judge {report.heldout[0].judge} on the same conversations (goal state "
            "re-tracked with its verdicts); mean [95% CI]",
            header,
            rows,
        )
    if report.trait_fidelity:
        header, rows = fidelity_rows(report.trait_fidelity)
        _print_table(
            f"trait fidelity (agent {report.comparisons[0].agent}): balanced accuracy of the "
            "trait band (low/mid/high) predicted from the user's lines, personas held out "
            "(grouped k-fold); above chance = the trait shows",
            header,
            rows,
        )
    if report.trait_transfer:
        header, rows = fidelity_rows(report.trait_transfer)
        _print_table(
            f"trait fidelity read by the classifier {args.trait_classifier} (fitted on other "
            "conversations): balanced accuracy [95% CI]",
            header,
            rows,
        )
    elif not args.no_trait_fidelity:
        console.print("trait fidelity: not measured (needs --space or --run, and 2+ personas)")
    header, rows = behaviour_rows(report.behaviour)
    _print_table(
        f"behavioural diversity of the simulated users (agent {report.comparisons[0].agent}): "
        "coverage metrics on their fingerprints",
        header,
        rows,
    )
    if args.save_trait_classifier:
        first_agent = next(iter(transcripts.values()))
        spec, records = next(iter(first_agent.items()))
        fit_trait_classifier(records, space, seed=args.seed).save(args.save_trait_classifier)
        console.print(
            f"trait classifier fitted on the conversations of {spec} written to "
            f"{args.save_trait_classifier} (for the trait_fidelity reward: TrainConfig "
            "trait_classifier)"
        )
    if args.json:
        first = report.comparisons[0].model_dump(mode="json")
        write_json(args.json, {**first, **report.model_dump(mode="json")})
        console.print(f"report written to {args.json}")
    if args.transcripts:
        folder = Path(args.transcripts)
        for a, (agent, by_model) in enumerate(transcripts.items()):
            for k, (spec, records) in enumerate(by_model.items()):
                name = f"model{k}.jsonl" if a == 0 else f"agent{a}-model{k}.jsonl"
                write_records(folder / name, records)
                console.print(f"transcripts of {spec} with agent {agent} in {folder / name}")
    return 0


def _source_options(parser: argparse.ArgumentParser, training_run: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--personas", help="persona JSONL file (or an export)")
    group.add_argument(
        "--run",
        help="evolution run directory: its front programs' personas, exported as "
        "`personaevo export` does (failing programs are listed)",
    )
    if training_run:
        group.add_argument(
            "--training-run",
            dest="training_run",
            metavar="DIR",
            help="a train-simulator output folder: exactly its held-out personas and goals",
        )
    parser.add_argument("--space", help="validate the persona file against this space")
    parser.add_argument("--goals", help="goal file or goal template (default: built-in template)")
    parser.add_argument("--intents", help="allowed intents, comma-separated (default: all)")
    parser.add_argument("--seed", type=seed_number, default=0)


def _conversation_options(parser: argparse.ArgumentParser, conversations: int) -> None:
    parser.add_argument(
        "--turns", type=int_at_least(1), default=6, help="user turns per conversation"
    )
    parser.add_argument("--conversations", type=int_at_least(1), default=conversations)
    parser.add_argument(
        "--agent",
        default="scripted",
        help="'scripted' or a model spec (also llm:SPEC); eval-simulator takes several, "
        "comma-separated",
    )
    parser.add_argument(
        "--agent-refusal",
        type=share,
        default=0.2,
        dest="agent_refusal",
        help="share of turns the scripted agent stalls (0 to 1)",
    )
    parser.add_argument("--judge", default="rules", help="'rules' or a model spec")
    parser.add_argument("--temperature", type=float_at_least(0.0), default=0.7)
    parser.add_argument("--max-tokens", type=int_at_least(1), default=48, dest="max_tokens")


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser(
        "simulate", help="play conversations between a user simulator and an agent"
    )
    sim.add_argument("--model", default=default_model(), help=MODEL_HELP)
    _source_options(sim)
    _conversation_options(sim, conversations=8)
    sim.add_argument("--out", default="rollouts.jsonl", help="JSONL file of conversations")
    sim.set_defaults(func=cmd_simulate)

    tr = sub.add_parser("train-simulator", help="train a user simulator with GRPO (TRL)")
    tr.add_argument("--model", help=f"model to start from: {MODEL_HELP}")
    _source_options(tr)
    tr.add_argument("--config", help="training configuration (JSON, TrainConfig fields)")
    tr.add_argument(
        "--n-per-program",
        type=int_at_least(1),
        dest="n_per_program",
        help="with --run: personas exported per front program (default 20)",
    )
    tr.add_argument("--resume", metavar="DIR", help="continue the training run in DIR")
    tr.add_argument("--out", help="output folder (default runs/simulator)")
    tr.add_argument("--steps", type=int_at_least(1))
    tr.add_argument(
        "--unit",
        choices=["conversation", "turn"],
        help="GRPO sample: a whole conversation (default) or one user turn",
    )
    tr.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft)")
    tr.add_argument(
        "--group-size", type=int_at_least(2), dest="group_size", help="GRPO completions/prompt"
    )
    tr.add_argument("--prompts-per-step", type=int_at_least(1), dest="prompts_per_step")
    tr.add_argument("--loss-type", dest="loss_type", help="grpo, dr_grpo, dapo, bnpo, ...")
    tr.add_argument("--beta", type=float_at_least(0.0), help="KL weight")
    tr.add_argument("--lr", type=positive_float, help="learning rate")
    tr.add_argument(
        "--max-tokens", type=int_at_least(4), dest="max_tokens", help="completion length (>= 4)"
    )
    tr.add_argument("--refresh-every", type=int_at_least(1), dest="refresh_every", help="steps (K)")
    tr.add_argument("--rollout-conversations", type=int_at_least(1), dest="rollout_conversations")
    tr.add_argument("--turns", type=int_at_least(1), help="user turns per rollout conversation")
    tr.add_argument("--curriculum", help="uniform, moderate-first or hardest-first")
    tr.add_argument(
        "--held-out",
        type=float_in(0.0, 1.0, high_inclusive=False),
        dest="held_out",
        help=f"share of personas held out for eval-simulator (at least 0, below 1; default "
        f"{DEFAULT_HELD_OUT}, a quarter)",
    )
    tr.add_argument("--rewards", help="comma-separated reward names (default: all)")
    tr.add_argument("--reward-weights", dest="reward_weights", help="NAME=W,NAME=W")
    tr.add_argument("--vllm", choices=["auto", "on", "off"])
    tr.add_argument("--agent", help="rollout agent: 'scripted' (default) or a model spec")
    tr.add_argument("--judge", help="reward judge: 'rules' (default) or a model spec")
    tr.set_defaults(func=cmd_train_simulator)
    tr.set_defaults(seed=None)

    ev = sub.add_parser("eval-simulator", help="score simulators, side by side, with CIs")
    ev.add_argument(
        "--model", action="append", required=True, help="model to score (repeat to compare)"
    )
    _source_options(ev, training_run=True)
    _conversation_options(ev, conversations=32)
    ev.add_argument(
        "--qa-questions",
        type=int_at_least(0),
        default=1,
        dest="qa_questions",
        help="Q&A probes asked per user turn (0: none)",
    )
    ev.add_argument(
        "--heldout-judge",
        dest="heldout_judge",
        help="re-score the conversations with this judge (a model spec; must not be the "
        "simulator's model, e.g. gemma3-270m for a smollm2 policy)",
    )
    ev.add_argument(
        "--no-trait-fidelity",
        action="store_true",
        dest="no_trait_fidelity",
        help="skip the trait-fidelity classifier (it loads the MiniLM embedding model)",
    )
    ev.add_argument(
        "--trait-classifier",
        dest="trait_classifier",
        help="also score each model's users with this trait classifier (fitted on other "
        "conversations, see --save-trait-classifier)",
    )
    ev.add_argument(
        "--save-trait-classifier",
        dest="save_trait_classifier",
        help="fit the trait classifier on the first model's conversations and write it here",
    )
    ev.add_argument("--json", help="write the full comparison (per-conversation values) here")
    ev.add_argument("--transcripts", help="folder for each model's conversations (JSONL)")
    ev.set_defaults(func=cmd_eval_simulator)
