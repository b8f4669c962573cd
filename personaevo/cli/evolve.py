"""``personaevo evolve``: evolve generator programs (the default job)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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
from personaevo.errors import InputError

if TYPE_CHECKING:
    from personaevo.evolution import EvolveConfig


def cmd_evolve(args: argparse.Namespace) -> int:
    from personaevo.evolution import EvolveConfig
    from personaevo.evolution.resume import RunComplete

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in EvolveConfig.model_fields and value not in (None, [])
    }
    llm = llm_config_from_args(args)
    if llm is not None:
        overrides["llm"] = llm
    if args.resume:
        # The run directory is the run: its config.yaml, with the flags given as requested
        # changes (run_evolution refuses those that would change the result).
        root = Path(args.resume)
        _check_resume_flags(root, args, overrides)
        config = EvolveConfig.load_run(root)
        source = str(root / "config.yaml")
    else:
        config = EvolveConfig.load(args.config) if args.config else EvolveConfig()
        source = args.config
    config = config_from_options(
        EvolveConfig,
        {**config.model_dump(), **overrides},
        {field: option_name(field) for field in overrides},
        source=source,
    )
    if args.resume:
        config = config.model_copy(update={"out": str(Path(args.resume))})
    try:
        return _run(config, args)
    except RunComplete as done:
        console.print(str(done))
        return 0


def _run(config: EvolveConfig, args: argparse.Namespace) -> int:
    """Run (or resume) ``config`` with a live progress panel on a terminal, then print the
    summary."""
    from personaevo.evolution import run_evolution

    if console.is_terminal:  # a live panel; plain log lines when output is not a terminal
        with Live(console=console, refresh_per_second=4) as live:

            def show(line: str) -> None:
                # progress replaces the panel; repairs and pool changes stay above it
                if line.startswith("gen "):
                    live.update(Panel(line))
                else:
                    live.console.print(line)

            evo, rundir, (space, _) = run_evolution(config, resume=bool(args.resume), log=show)
    else:
        evo, rundir, (space, _) = run_evolution(config, resume=bool(args.resume), log=console.print)
    print_run_summary(evo, rundir, space, config, wide=args.wide)
    kept = f", {evo.kept} kept from before an interruption" if evo.kept else ""
    console.print(f"this session: {evo.evaluated_here} evaluations run{kept}")
    return 0


def _check_resume_flags(root: Path, args: argparse.Namespace, overrides: dict) -> None:
    """One-line refusals of what ``--resume`` cannot be combined with."""
    if args.config:
        raise InputError(
            f"--config with --resume: the run's own {root / 'config.yaml'} is its "
            f"configuration; give changes (--generations, --workers, --address) as flags"
        )
    if "out" in overrides and Path(overrides["out"]).resolve() != root.resolve():
        raise InputError(
            f"--out {overrides['out']} with --resume {root}: a resumed run writes only to "
            f"its own directory; copy the directory there first and resume the copy"
        )
    if not (root / "config.yaml").is_file():
        raise InputError(
            f"{root}: no such run directory"
            if not root.is_dir()
            else f"{root}: no config.yaml: not a run directory made by personaevo evolve"
        )


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
