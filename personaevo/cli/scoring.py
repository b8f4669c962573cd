"""``personaevo score-personas``, ``reference`` and ``score``: measure personas and programs."""

from __future__ import annotations

import argparse
import textwrap
from collections import Counter
from pathlib import Path

from personaevo.assess import AssessmentSummary, check_assessable, make_assessor
from personaevo.assess.base import measured_rows
from personaevo.bounds import MAX_PERSONAS_PER_RUN, MAX_PROBES, MAX_WORKERS, MIN_PROBES
from personaevo.cli._common import (
    add_assess_option,
    add_llm_options,
    add_reference_options,
    console,
    llm_config_from_args,
    reference_from_args,
    say,
    write_json,
)
from personaevo.cli._types import (
    personas_per_run,
    positive_float,
    probe_count,
    seed_number,
    worker_count,
)
from personaevo.errors import InputError
from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.evolution.config import EvolveConfig
from personaevo.llm.base import LLM
from personaevo.llm.config import LLMConfig
from personaevo.metrics import score
from personaevo.personas import read_persona_records, write_personas
from personaevo.sandbox import DEFAULT_CPU_MS_PER_PERSONA, DEFAULT_WALL_SECONDS, SandboxLimits
from personaevo.spaces import resolve_space
from personaevo.tables import (
    best_by_objective,
    counts_text,
    report_table,
    short_metric_name,
    summary_table,
)


def _open_llm(args: argparse.Namespace) -> LLM | None:
    """The model the options name; the default one (:func:`~personaevo.llm.config.default_model`,
    SmolLM2) when a questionnaire needs one and none is named; None otherwise."""
    config = llm_config_from_args(args)
    if config is None and args.assess == "questionnaire":
        config = LLMConfig()
    if config is None:
        return None
    from personaevo.llm.factory import build_llm

    return build_llm(config)


def _print_assessment(label: str, summary: AssessmentSummary | None) -> None:
    if summary is None:
        return
    line = f"{label}: {summary.method} measured {summary.measured} of {summary.personas}"
    if summary.unmeasured:
        line += f" (unmeasured: {summary.unmeasured})"
    if "parse_rate" in summary.detail:
        line += f", answers parsed {summary.detail['parse_rate']:.1%}"
    if summary.detail.get("error"):
        line += f", model error: {summary.detail['error']}"
    console.print(line + f", {summary.seconds:.1f} s")


def cmd_score_personas(args: argparse.Namespace) -> int:
    space = resolve_space(args.space)
    check_assessable(space, args.assess)
    reference = reference_from_args(args, space)
    records = read_persona_records(args.file)
    if not records:
        raise InputError(f"{args.file}: no persona records (the file is empty)")
    llm = _open_llm(args)
    try:
        summary = None
        if args.assess != "explicit":
            measured = make_assessor(args.assess, llm=llm).measure(records, space, seed=args.seed)
            records, summary = measured.records, measured.summary
            if args.measured:
                write_personas(args.measured, measured_rows(measured))
    finally:
        if llm is not None:
            llm.close()
    report = score(records, space, reference=reference, seed=args.seed, n_probes=args.probes)
    title = f"space {space.name}, positions: {args.assess}"
    console.print(report_table({Path(args.file).name: report}, title=title))
    _print_assessment(Path(args.file).name, summary)
    if report.invalid_reasons:
        say(f"invalid personas by reason: {counts_text(report.invalid_reasons)}")
    if args.json:
        payload = report.model_dump(mode="json")
        if summary is not None:
            payload["assessment"] = summary.model_dump(mode="json")
        write_json(args.json, payload)
        console.print(f"report written to {args.json}")
    if args.measured and summary is not None:
        console.print(f"measured personas written to {args.measured}")
    if report.n_valid == 0:
        reasons = counts_text(report.invalid_reasons)
        hint = "; were they written for another space?" if "unknown axis" in reasons else ""
        say(
            f"error: {args.file}: none of the {report.n_personas} personas is valid in space "
            f"{space.name!r} ({reasons}){hint}"
        )
        return 1
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
    programs = [Path(p) for p in args.programs] or seed_generator_paths(args.assess)
    for path in programs:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a program file")
        if not path.is_file():
            raise InputError(f"{path}: no such program file")
    limits = SandboxLimits.for_personas(args.n, args.timeout, args.cpu_ms_per_persona)
    check_assessable(space, args.assess)
    llm = _open_llm(args)
    try:
        evaluations = evaluate_programs(
            programs,
            space,
            n=args.n,
            seed=args.seed,
            reference=reference,
            workers=args.workers,
            limits=limits,
            n_probes=args.probes,
            llm=llm,
            assess=args.assess,
        )
    finally:
        if llm is not None:
            llm.close()
    labels = [_label(path, programs) for path in programs]
    reports = {label: e.report for label, e in zip(labels, evaluations, strict=True)}
    status = {label: e.failure or "ok" for label, e in zip(labels, evaluations, strict=True)}
    source = reference.summary.source if reference else "none"
    title = f"{space.name}: n={args.n}, seed={args.seed}, reference: {source}"
    if args.assess != "explicit":
        title += f", positions: {args.assess}"
    objectives = EvolveConfig().resolved_objectives(reference is not None)
    if args.wide:
        console.print(report_table(reports, title=title, status=status))
    else:
        console.print(summary_table(reports, objectives, status, title=title))
    say(textwrap.fill(_verdict(reports, objectives, status, args.n, wide=args.wide), 80))
    for label, e in zip(labels, evaluations, strict=True):
        _print_assessment(label, e.assessment)
        if e.llm_usage is not None and e.llm_usage.calls:
            u = e.llm_usage
            console.print(
                f"{label}: language model {u.calls} calls, {u.requests} requests, "
                f"{u.prompt_tokens} + {u.completion_tokens} tokens, {u.seconds:.1f} s"
            )
    for label, e in zip(labels, evaluations, strict=True):
        if not e.ok:
            console.print(f"[bold]{label}[/bold] failed ({e.failure}): {e.message}")
            if e.traceback:
                say(e.traceback)
    if args.json:
        payload = {
            "space": space.name,
            "evaluations": [e.model_dump(mode="json") for e in evaluations],
        }
        write_json(args.json, payload)
        console.print(f"evaluations written to {args.json}")
    return 0 if all(e.ok for e in evaluations) else 1


def _verdict(
    reports: dict, objectives: list[str], status: dict[str, str], n: int, wide: bool
) -> str:
    """One sentence on what the scores show: who is best on each objective, what failed."""
    best = best_by_objective(reports, objectives)
    parts = [f"{short_metric_name(k)} {label} ({value:.3f})" for k, (label, value) in best.items()]
    text = f"Best at n={n}: " + ("; ".join(parts) if parts else "no program was scored") + "."
    failed = Counter(s for s in status.values() if s != "ok")
    if failed:
        text += f" Failed: {counts_text(failed)}."
    if not wide:
        text += " --wide shows every metric; --json FILE writes them."
    return text


def _label(path: Path, programs: list[Path]) -> str:
    """The file name, or the path when two programs share a name."""
    same_name = sum(p.name == path.name for p in programs) > 1
    return str(path) if same_name else path.stem


PROBES_HELP = f"MC coverage probe points ({MIN_PROBES} to {MAX_PROBES:,}; default 10,000)"


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("score-personas", help="score a JSONL persona file")
    sp.add_argument("file", metavar="FILE.jsonl")
    sp.add_argument("--space", required=True, help="built-in space name or space file")
    sp.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    sp.add_argument("--seed", type=seed_number, default=0)
    sp.add_argument("--probes", type=probe_count, default=10_000, help=PROBES_HELP)
    add_assess_option(sp)
    sp.add_argument(
        "--measured",
        metavar="OUT.jsonl",
        help="write each persona with its measured traits (text assessments)",
    )
    add_llm_options(sp)
    add_reference_options(sp)
    sp.set_defaults(func=cmd_score_personas)

    ref = sub.add_parser("reference", help="build a reference population and print its summary")
    ref.add_argument("--space", required=True)
    ref.add_argument("--seed", type=seed_number, default=0)
    add_reference_options(ref)
    ref.set_defaults(func=cmd_reference)

    sc = sub.add_parser(
        "score", help="run generator programs in the sandbox and score them side by side"
    )
    sc.add_argument(
        "programs", nargs="*", metavar="PROGRAM.py", help="default: the seed generators"
    )
    sc.add_argument("--space", default="customer_support", help="built-in space name or space file")
    sc.add_argument(
        "--n",
        type=personas_per_run,
        default=1000,
        help=f"personas per program (1 to {MAX_PERSONAS_PER_RUN:,}; default 1000)",
    )
    sc.add_argument("--seed", type=seed_number, default=0)
    sc.add_argument(
        "--workers", type=worker_count, default=2, help=f"sandbox workers (1 to {MAX_WORKERS})"
    )
    sc.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_WALL_SECONDS,
        help=f"wall-clock seconds per program (default {DEFAULT_WALL_SECONDS:g})",
    )
    sc.add_argument(
        "--cpu-ms-per-persona",
        type=positive_float,
        default=DEFAULT_CPU_MS_PER_PERSONA,
        help="CPU budget per persona asked for, in ms (at least 1 s a program; default "
        f"{DEFAULT_CPU_MS_PER_PERSONA:g}, as evolve)",
    )
    sc.add_argument("--probes", type=probe_count, default=10_000, help=PROBES_HELP)
    sc.add_argument("--json", metavar="OUT", help="write every evaluation as JSON")
    sc.add_argument(
        "--wide",
        action="store_true",
        help="print every metric (a wide table) instead of the summary",
    )
    add_assess_option(sc)
    add_llm_options(sc)
    add_reference_options(sc)
    sc.set_defaults(func=cmd_score)
