"""How accurate is each judge? Accuracy, precision and recall on a labelled set.

The set (:func:`personaevo.simulator.judge_bench.build_judge_set`) holds simulated-user
lines of four kinds with known labels: consistent with the persona, contradicting one of
its facts, leaking information the user does not know, and sounding like the assistant.
Each kind comes in two families: ``pattern`` lines use the phrasings the rule judge was
written for, and ``paraphrase`` lines say the same thing in other words. Every judge
answers three questions about every line, and the script prints per question and per
family: accuracy (unreadable counted wrong), balanced accuracy (0.5 is chance), precision,
recall and unreadable replies. ``--json OUT`` writes every report.

Run: ``python experiments/judge_accuracy.py --judges rules tiny smollm2 gemma3-270m``
(a judge spec is ``rules`` or any model spec ``--judge`` takes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from personaevo.errors import InputError
from personaevo.simulator.judge_bench import QUESTIONS, JudgeReport, build_judge_set, measure_judge
from personaevo.simulator.models import open_judge


def _cell(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.2f}"


def print_report(report: JudgeReport) -> None:
    print(f"\n{report.judge}: {report.lines} lines, {report.seconds:.1f} s")
    print(f"  {'question':22s} {'family':11s}   acc  bal.acc  prec  recall  unreadable")
    for question in QUESTIONS:
        rows = [("all", report.questions[question])]
        rows += [(family, qs[question]) for family, qs in sorted(report.by_family.items())]
        for family, c in rows:
            print(
                f"  {question:22s} {family:11s} {c.accuracy:5.2f}  {c.balanced_accuracy:5.2f}  "
                f"{_cell(c.precision)}  {_cell(c.recall)}  {c.unreadable:4d}/{c.lines}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judges", nargs="+", default=["rules", "tiny"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--personas", type=int, default=24, help="8 lines per persona")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    lines = build_judge_set(args.seed, args.personas)
    kinds = sorted({(x.kind, x.family) for x in lines})
    print(f"labelled set: {len(lines)} lines, seed {args.seed}, kinds x families: {kinds}")
    reports = []
    for spec in args.judges:
        try:
            judge = open_judge(spec)
        except InputError as err:
            print(f"\n{spec}: not measured: {err}", file=sys.stderr)
            continue
        report = measure_judge(judge, lines)
        report.judge = spec
        print_report(report)
        reports.append(report)
        sys.stdout.flush()
    if args.json:
        args.json.write_text(
            json.dumps([r.model_dump(mode="json") for r in reports], indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
