"""``personaevo export-tau2`` (personas with goals as tau2-bench tasks) and ``personaevo
serve-simulator`` (a user simulator as an OpenAI-compatible endpoint for tau2-bench)."""

from __future__ import annotations

import argparse
import json

from personaevo.cli._common import MODEL_HELP, say
from personaevo.cli._types import float_at_least, int_at_least, port_number, seed_number
from personaevo.errors import InputError
from personaevo.llm.config import default_model

PAIRINGS = ("per-persona", "per-goal")


def _personas(args: argparse.Namespace, required: bool = True):
    from personaevo.simulator import load_profiles

    if not required and args.personas is None and args.run is None:
        return []
    profiles, _ = load_profiles(args.personas, args.run, args.space, args.seed, log=say)
    return profiles


def cmd_export_tau2(args: argparse.Namespace) -> int:
    from personaevo.simulator.goal_files import (
        goals_for_profiles,
        load_goal_source,
        profiles_for_goals,
    )
    from personaevo.simulator.tau2 import load_tau2_source, read_tau2_tasks, write_tau2_scenarios

    profiles = _personas(args)
    originals = load_tau2_source(args.goals)
    if originals is not None:
        goals, template = read_tau2_tasks(str(args.goals)), None
    else:
        goals, template = load_goal_source(args.goals)
    if args.pairing == "per-goal":
        if template is not None:
            raise InputError("--pairing per-goal needs a goal file (--goals), not a template")
        pairs = list(zip(profiles_for_goals(goals, profiles, args.seed), goals, strict=True))
    else:
        pairs = list(
            zip(profiles, goals_for_profiles(profiles, goals, template, args.seed), strict=True)
        )
    by_id = {t.id: t for t in originals} if originals is not None else None
    tasks = write_tau2_scenarios(args.out, pairs, by_id, force=args.force)
    personas = len({p.persona_id for p, _ in pairs})
    goal_count = len({g.id for _, g in pairs})
    say(
        f"wrote {len(tasks)} tau2-bench tasks ({personas} personas, {goal_count} goals) to "
        f"{args.out}; task ids are GOAL:PERSONA"
    )
    return 0


def cmd_serve_simulator(args: argparse.Namespace) -> int:
    from personaevo.llm import SamplingParams
    from personaevo.simulator import IntentPlanner, Simulator
    from personaevo.simulator.models import check_model_spec, open_judge, open_model
    from personaevo.simulator.simulator import parse_intents
    from personaevo.simulator.tau2 import read_tau2_file
    from personaevo.simulator.tau2_server import ScenarioBook, UserSimulatorServer

    check_model_spec(args.model)
    planner = IntentPlanner(parse_intents(_csv(args.intents), "--intents"))
    tasks = [task for path in args.tasks or () for task in read_tau2_file(path)]
    book = ScenarioBook(tasks, _personas(args, required=False))
    llm = open_model(args.model, args.llm_model)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    server = UserSimulatorServer(
        Simulator(llm, params, planner=planner),
        book,
        judge=open_judge(args.judge),
        served_name=args.served_name,
        host=args.host,
        port=args.port,
        max_turns=args.turns,
        seed=args.seed,
    )
    user_args = json.dumps({"api_base": server.url, "api_key": "unused"})
    # plain prints, one line each and flushed: a harness reading a pipe needs the URL now
    print(
        f"serving user simulator {llm.name} as model {args.served_name!r} at {server.url} "
        f"({len(book.tasks)} tasks, {len(book.profiles)} personas); Ctrl-C stops",
        flush=True,
    )
    print(
        f"tau2-bench: tau2 run --domain DOMAIN ... --user-llm openai/{args.served_name} "
        f"--user-llm-args '{user_args}'",
        flush=True,
    )
    server.serve_until_interrupted()
    return 0


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _persona_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--personas", help="persona JSONL file (or an export)")
    group.add_argument("--run", help="evolution run directory: its front programs' personas")
    parser.add_argument("--space", help="validate the persona file against this space")
    parser.add_argument("--seed", type=seed_number, default=0)


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export-tau2",
        help="write personas paired with goals as a tau2-bench tasks.json",
        description="Pair each persona with a goal (seeded) and write one tau2-bench task "
        "per pair: user_scenario.persona holds the persona, the instructions come from the "
        "goal (verbatim, with the evaluation criteria, when --goals is a tau2 task file).",
    )
    _persona_options(ex)  # one of them is required
    ex.add_argument(
        "--goals",
        help="goal file, goal template or tau2-bench task file (tau2:PATH, or detected by "
        "its shape); default: the built-in template",
    )
    ex.add_argument(
        "--pairing",
        choices=PAIRINGS,
        default="per-persona",
        help="per-persona: one task per persona, its goal drawn (default); per-goal: one "
        "task per goal, the personas dealt out in a seeded order",
    )
    ex.add_argument("--out", required=True, metavar="FILE", help="tasks file to write (JSON)")
    ex.add_argument("--force", action="store_true", help="overwrite an existing file")
    ex.set_defaults(func=cmd_export_tau2)

    sv = sub.add_parser(
        "serve-simulator",
        help="serve a user simulator over the OpenAI HTTP API for tau2-bench",
        description="Play the user for an outside agent harness: POST /v1/chat/completions "
        "takes tau2-bench's user-simulator request (system prompt with <scenario>, agent "
        "messages as role user) and returns the user's next line, ending with ###STOP###.",
    )
    sv.add_argument("--model", default=default_model(), help=MODEL_HELP)
    sv.add_argument("--llm-model", dest="llm_model", help="served model name (openai:URL)")
    _persona_options(sv)
    sv.add_argument(
        "--tasks",
        action="append",
        metavar="FILE",
        help="tau2 task file whose scenarios are recognised exactly (repeatable)",
    )
    sv.add_argument("--served-name", dest="served_name", default="personaevo-user")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=port_number, default=8000)
    sv.add_argument(
        "--turns", type=int_at_least(1), default=20, help="user turns before the user stops"
    )
    sv.add_argument("--max-tokens", type=int_at_least(1), default=48, dest="max_tokens")
    sv.add_argument(
        "--temperature",
        type=float_at_least(0.0),
        default=0.7,
        help="default when a request gives none",
    )
    sv.add_argument("--judge", default="rules", help="goal-state judge: 'rules' or a model spec")
    sv.add_argument("--intents", help="allowed intents, comma-separated (default: all)")
    sv.set_defaults(func=cmd_serve_simulator)
