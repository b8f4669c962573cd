"""``personaevo report``: a static, self-contained HTML page about a run and its export."""

from __future__ import annotations

import argparse

from personaevo.cli._common import say
from personaevo.report import write_report


def cmd_report(args: argparse.Namespace) -> int:
    path = write_report(
        args.run, out=args.out, personas=args.personas, axes=args.axes, force=args.force
    )
    say(f"report written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a run (and its latest export)",
        description="Pareto front over generations, coverage and rare hits, failure kinds, "
        "language-model accounting, and the exported personas over the reference.",
    )
    rp.add_argument("run", metavar="DIR", help="run directory (personaevo evolve)")
    rp.add_argument("--out", metavar="FILE.html", help="output file (default DIR/report.html)")
    rp.add_argument(
        "--personas",
        metavar="FILE",
        help="exported personas to show (default: the run's latest export, DIR/exports.jsonl)",
    )
    rp.add_argument(
        "--axes",
        action="append",
        metavar="A,B",
        help="an axis pair to plot the personas on (repeatable; default: the two pairs with "
        "the most rare combinations reached)",
    )
    rp.add_argument("--force", action="store_true", help="overwrite an existing report")
    rp.set_defaults(func=cmd_report)
