"""``personaevo export``: coverage-optimised personas from a run's Pareto front, with a
dataset card and a summary beside the file."""

from __future__ import annotations

import argparse

from personaevo.assess import ASSESS_METHODS
from personaevo.bounds import (
    MAX_EXPORT_PERSONAS,
    MAX_EXPORT_POOL,
    MAX_PERSONAS_PER_RUN,
    MAX_PROBES,
    MAX_TWAY,
    MAX_WORKERS,
    MIN_PROBES,
)
from personaevo.cli._common import say
from personaevo.cli._types import (
    int_in,
    personas_per_run,
    positive_float,
    probe_count,
    seed_number,
    worker_count,
)
from personaevo.export import export_personas
from personaevo.export.records import FORMATS
from personaevo.export.select import METHODS


def cmd_export(args: argparse.Namespace) -> int:
    summary = export_personas(
        args.run,
        n=args.n,
        out=args.out,
        fmt=args.format,
        select_method=args.select,
        seed=args.seed,
        pool_size=args.pool,
        chunk=args.chunk,
        workers=args.workers,
        timeout=args.timeout,
        tway=args.tway,
        force=args.force,
        n_probes=args.probes,
        assess=args.assess,
        log=say,
        drop_copies=args.drop_copies,
    )
    say(
        f"exported {summary.exported:,} personas (asked for {summary.requested:,}) to "
        f"{summary.output}; card: {summary.card}"
    )
    for rare in summary.rare:
        baseline = "n/a" if rare.density_matched is None else f"{rare.density_matched:,}"
        say(
            f"{rare.kind}: {rare.exported:,} of {rare.total:,} reached "
            f"(density-matched sample of the same size: {baseline})"
        )
    if summary.copies or summary.copies_dropped:
        say(
            f"copies of reference respondents: {summary.copies:,} exported (flagged "
            f"copy_of_respondent), {summary.copies_dropped:,} dropped"
            + ("" if summary.copies_dropped else "; --drop-copies leaves them out")
        )
    for note in summary.notes:
        say(f"note: {note}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser(
        "export",
        help="export coverage-optimised personas from a run, with a dataset card",
        description="Sample the run's Pareto-front programs in the sandbox, drop invalid and "
        "duplicate personas, keep one persona for every rare and consequential cell the pool "
        "reached, select the rest for coverage, and write the file, a dataset card "
        "(FILE.card.md) and a summary (FILE.export.json). For personas paired with goals as "
        "tau2-bench tasks, see export-tau2.",
    )
    ex.add_argument("--run", required=True, metavar="DIR", help="run directory (personaevo evolve)")
    ex.add_argument(
        "--n",
        type=int_in(1, MAX_EXPORT_PERSONAS),
        default=5000,
        help=f"personas to export (1 to {MAX_EXPORT_PERSONAS:,}; default 5000)",
    )
    ex.add_argument(
        "--out", metavar="FILE", help="output file (default DIR/exports/personas-...jsonl)"
    )
    ex.add_argument("--format", choices=FORMATS, help="file format (default: from --out's suffix)")
    ex.add_argument(
        "--select", choices=METHODS, default="maximin", help="selection method (default maximin)"
    )
    ex.add_argument("--seed", type=seed_number, default=0, help="seeds sampling and selection")
    ex.add_argument(
        "--pool",
        type=int_in(1, MAX_EXPORT_POOL),
        help=f"personas to sample first (up to {MAX_EXPORT_POOL:,}; default 4 x --n)",
    )
    ex.add_argument(
        "--chunk",
        type=personas_per_run,
        default=2000,
        help=f"personas per sandbox run (1 to {MAX_PERSONAS_PER_RUN:,}; default 2000)",
    )
    ex.add_argument(
        "--workers", type=worker_count, default=2, help=f"sandbox workers (1 to {MAX_WORKERS})"
    )
    ex.add_argument(
        "--timeout", type=positive_float, help="seconds per sandbox run (default: the run's)"
    )
    ex.add_argument(
        "--tway",
        type=int_in(0, MAX_TWAY),
        default=2,
        help=f"strength of the rare combinations kept (0: none; at most {MAX_TWAY})",
    )
    ex.add_argument(
        "--probes",
        type=probe_count,
        default=10_000,
        help=f"MC coverage probes for the card ({MIN_PROBES} to {MAX_PROBES:,}; default 10,000)",
    )
    ex.add_argument(
        "--assess",
        choices=ASSESS_METHODS,
        help="how positions are read (default: as the run read them, its config's assess): "
        "explicit exports the declared traits; embedding or questionnaire measure each "
        "persona's text and export the measured positions, keeping declared_traits",
    )
    ex.add_argument("--force", action="store_true", help="overwrite existing output files")
    ex.add_argument(
        "--drop-copies",
        action="store_true",
        help="leave out personas that copy a reference respondent (they are flagged anyway)",
    )
    ex.set_defaults(func=cmd_export)
