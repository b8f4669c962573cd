"""``personaevo evolve``: evolve generator programs (the default job)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.live import Live
from rich.panel import Panel

from personaevo.bounds import MAX_PERSONAS_PER_RUN, MAX_WORKERS
from personaevo.cli._common import (
    add_assess_option,
    add_llm_options,
    console,
    llm_config_from_args,
)
from personaevo.cli._options import config_from_options, option_name
from personaevo.cli._summary import print_run_summary
from personaevo.cli._types import (
    int_at_least,
    personas_per_run,
    seed_number,
    share,
    worker_count,
)


def cmd_evolve(args: argparse.Namespace) -> int:
    from personaevo.evolution import EvolveConfig, run_evolution

    if args.resume:
        config = EvolveConfig.load(Path(args.resume) / "config.yaml")
    else:
        config = EvolveConfig.load(args.config) if args.config else EvolveConfig()
        overrides = {
            key: value
            for key, value in vars(args).items()
            if key in EvolveConfig.model_fields and value not in (None, [])
        }
        llm = llm_config_from_args(args)
        if llm is not None:
            overrides["llm"] = llm
        config = config_from_options(
            EvolveConfig,
            {**config.model_dump(), **overrides},
            {field: option_name(field) for field in overrides},
            source=args.config,
        )
    if console.is_terminal:  # a live panel; plain log lines when output is not a terminal
        with Live(console=console, refresh_per_second=4) as live:
            evo, rundir, (space, _) = run_evolution(
                config, resume=bool(args.resume), log=lambda line: live.update(Panel(line))
            )
    else:
        evo, rundir, (space, _) = run_evolution(config, resume=bool(args.resume), log=console.print)
    print_run_summary(evo, rundir, space, config, wide=args.wide)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evolve", help="evolve generator programs (NSGA-II islands on Ray)")
    ev.add_argument("--config", help="run configuration (YAML/JSON)")
    ev.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    ev.add_argument("--wide", action="store_true", help="print every metric instead of the summary")
    ev.add_argument("--space")
    ev.add_argument("--reference")
    ev.add_argument("--reference-map", dest="reference_map")
    ev.add_argument("--seeds", nargs="+", metavar="PROGRAM.py")
    ev.add_argument("--generations", type=int_at_least(1))
    ev.add_argument("--population", type=int_at_least(2), help="individuals per island")
    ev.add_argument("--islands", type=int_at_least(1))
    ev.add_argument(
        "--workers", type=worker_count, help=f"Ray evaluation workers (1 to {MAX_WORKERS})"
    )
    ev.add_argument("--address", help="join an existing Ray cluster")
    ev.add_argument("--seed", type=seed_number)
    ev.add_argument(
        "--n",
        type=personas_per_run,
        help=f"personas per evaluation (1 to {MAX_PERSONAS_PER_RUN:,})",
    )
    ev.add_argument("--out", help="run directory")
    add_assess_option(ev, default=None)
    add_llm_options(ev)
    ev.add_argument(
        "--llm-mutation-rate",
        dest="llm_mutation_rate",
        type=share,
        metavar="RATE",
        help="share of mutations the language model makes when --llm is given (default 0.5)",
    )
    ev.set_defaults(func=cmd_evolve)
