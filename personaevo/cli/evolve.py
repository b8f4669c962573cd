"""``personaevo evolve``: evolve generator programs (the default job)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.live import Live
from rich.panel import Panel

from personaevo.cli._common import (
    add_assess_option,
    add_llm_options,
    console,
    llm_config_from_args,
)
from personaevo.errors import InputError
from personaevo.tables import report_table


def cmd_evolve(args: argparse.Namespace) -> int:
    from personaevo.evolution import EvolveConfig, run_evolution

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
        config = EvolveConfig.load_run(root)
    else:
        config = EvolveConfig.load(args.config) if args.config else EvolveConfig()
    config = config.model_validate({**config.model_dump(), **overrides})
    if args.resume:
        config = config.model_copy(update={"out": str(Path(args.resume))})
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
    best = {}
    for i, name in enumerate(evo.objectives):
        top = max(evo.front, key=lambda ind, i=i: ind.fitness.values[i])
        best.setdefault(
            top.key, (f"best {name.split('.')[-2] if name.count('.') > 1 else name}", top)
        )
    columns = {f"seed {s.name}": evo.cache[s.key].report for s in evo.seeds}
    status = {f"seed {s.name}": evo.cache[s.key].failure or "ok" for s in evo.seeds}
    for label, ind in best.values():
        columns[label] = evo.cache[ind.key].report
        status[label] = ind.name
    title = (
        f"{space.name}: front of {len(evo.front)} after {evo.generation} generations vs seeds "
        f"(n={config.n}, seed={config.seed}); objectives: {', '.join(evo.objectives)}"
    )
    console.print(report_table(columns, title=title, status=status))
    kept = f", {evo.kept} kept from before an interruption" if evo.kept else ""
    console.print(f"this session: {evo.evaluated_here} evaluations run{kept}")
    console.print(f"run directory: {rundir.path}  (front programs in {rundir.path / 'front'})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evolve", help="evolve generator programs (NSGA-II islands on Ray)")
    ev.add_argument("--config", help="run configuration (YAML/JSON)")
    ev.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    ev.add_argument("--space")
    ev.add_argument("--reference")
    ev.add_argument("--reference-map", dest="reference_map")
    ev.add_argument("--seeds", nargs="+", metavar="PROGRAM.py")
    ev.add_argument("--generations", type=int)
    ev.add_argument("--population", type=int)
    ev.add_argument("--islands", type=int)
    ev.add_argument("--workers", type=int)
    ev.add_argument("--address", help="join an existing Ray cluster")
    ev.add_argument("--seed", type=int)
    ev.add_argument("--n", type=int, help="personas per evaluation")
    ev.add_argument("--out", help="run directory")
    add_assess_option(ev, default=None)
    add_llm_options(ev)
    ev.add_argument(
        "--llm-mutation-rate",
        dest="llm_mutation_rate",
        type=float,
        metavar="RATE",
        help="share of mutations the language model makes when --llm is given (default 0.5)",
    )
    ev.set_defaults(func=cmd_evolve)
