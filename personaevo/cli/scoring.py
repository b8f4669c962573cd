"""``personaevo score-personas``, ``reference`` and ``score``: measure personas and programs."""

from __future__ import annotations

import argparse
from pathlib import Path

from personaevo.cli._common import (
    add_reference_options,
    console,
    reference_from_args,
    write_json,
)
from personaevo.errors import InputError
from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.metrics import score
from personaevo.personas import read_persona_records
from personaevo.sandbox import SandboxLimits
from personaevo.spaces import resolve_space
from personaevo.tables import report_table


def cmd_score_personas(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    reference = reference_from_args(args, space)
    records = read_persona_records(args.file)
    report = score(records, space, reference=reference, seed=args.seed, n_probes=args.probes)
    console.print(report_table({Path(args.file).name: report}, title=f"space {space.name}"))
    if report.invalid_reasons:
        console.print(f"invalid personas by reason: {report.invalid_reasons}")
    if args.json:
        write_json(args.json, report.model_dump(mode="json"))
        console.print(f"report written to {args.json}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    if not (args.reference_map or args.reference):
        args.builtin_reference = True
    reference = reference_from_args(args, space)
    console.print_json(reference.summary.model_dump_json())
    console.print(
        f"support cells: {len(reference.cell_keys):,}  "
        f"rare cells: {len(reference.rare_cell_keys):,}  "
        f"rare 2-way combinations: {sum(int(r.sum()) for _, _, r in reference.tway(2)):,}"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    reference = reference_from_args(args, space)
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
        write_json(args.json, payload)
        console.print(f"evaluations written to {args.json}")
    return 0 if all(e.ok for e in evaluations) else 1


def _label(path: Path, programs: list[Path]) -> str:
    """The file name, or the path when two programs share a name."""
    same_name = sum(p.name == path.name for p in programs) > 1
    return str(path) if same_name else path.stem


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("score-personas", help="score a JSONL persona file")
    sp.add_argument("file", metavar="FILE.jsonl")
    sp.add_argument("--space", required=True, help="built-in space name or space file")
    sp.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--probes", type=int, default=10_000, help="MC coverage probe points")
    add_reference_options(sp)
    sp.set_defaults(func=cmd_score_personas)

    ref = sub.add_parser("reference", help="build a reference population and print its summary")
    ref.add_argument("--space", required=True)
    ref.add_argument("--seed", type=int, default=0)
    add_reference_options(ref)
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
    add_reference_options(sc)
    sc.set_defaults(func=cmd_score)
