"""``personaevo report``: a static, self-contained HTML page about a run and its export.

Sections: the Pareto front after each generation; the objectives per generation;
coverage and rare hits per generation; the outcome of the evaluations (failure kinds)
per generation; the language-model accounting, when a model was used; and, when the run
has an export (``--personas FILE`` or the run's latest, see ``exports.jsonl``), the
exported personas over the reference (PCA and chosen axis pairs), their marginals
against the reference and the exported-versus-density-matched metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from personaevo.errors import InputError
from personaevo.export.card import metrics_rows
from personaevo.export.records import atomic_write
from personaevo.report import figures
from personaevo.report.data import ReportData, gather
from personaevo.report.page import render
from personaevo.runfiles import open_run

__all__ = ["Section", "build_report", "write_report"]


@dataclass
class Section:
    id: str
    title: str
    text: str = ""
    table: list[list[str]] | None = None
    figures: list[tuple[str, str]] = field(default_factory=list)


def _axis_pairs(data: ReportData, reference, axes: list[str] | None) -> list[tuple[int, int]]:
    space = data.files.space
    if not axes:
        return figures.default_pairs(data, reference)
    pairs = []
    for text in axes:
        names = [n.strip() for n in text.split(",")]
        unknown = [n for n in names if n not in space.axis_names]
        if len(names) != 2 or unknown or names[0] == names[1]:
            raise InputError(
                f"--axes {text!r}: give two different axes of {space.name!r} as A,B "
                f"(axes: {', '.join(space.axis_names)})"
            )
        pairs.append((space.axis_names.index(names[0]), space.axis_names.index(names[1])))
    return pairs


def build_report(
    run: str | Path, personas: str | Path | None = None, axes: list[str] | None = None
) -> tuple[str, ReportData]:
    """The report's HTML and the data behind it."""
    files = open_run(run)
    data = gather(files, personas)
    reference = files.reference if data.export is not None else None
    pairs = _axis_pairs(data, reference, axes)
    space = files.space
    last = data.logbook[-1]
    total = sum(sum(c.values()) for c in data.outcomes.values())
    failed = sum(n for c in data.outcomes.values() for k, n in c.items() if k != "ok")
    facts = [
        ("space", f"{space.name} v{space.version} ({space.dim} axes)"),
        ("objectives", ", ".join(files.objectives)),
        ("generations", str(last.gen)),
        ("evaluations", f"{total:,} ({failed:,} failed)"),
        ("front", data.front_text()),
        ("front programs in the run", ", ".join(p.name for p in files.front)),
    ]
    sections = [
        Section(
            "front",
            "Pareto front over generations",
            "Each panel projects the objectives on a pair of them. Grey: every program that "
            "ran successfully; coloured: the non-dominated programs after each generation.",
            figures=_some([("Pareto front per generation", figures.pareto_figure(data))]),
        ),
        Section(
            "objectives",
            "Objectives per generation",
            "Best and mean over the islands' programs, from the logbook.",
            figures=_some([("objectives per generation", figures.objectives_figure(data))]),
        ),
        Section(
            "coverage",
            "Coverage and rare hits per generation",
            "Best value so far, and the median over the programs evaluated in that generation.",
            figures=_some([("coverage and rare hits", figures.coverage_figure(data))]),
        ),
        Section(
            "failures",
            "Failure kinds over time",
            "Evaluations of each generation by outcome: ok, or the sandbox's failure kind.",
            table=_outcome_table(data),
            figures=_some([("evaluation outcomes per generation", figures.failures_figure(data))]),
        ),
    ]
    if data.llm:
        gen, acc = data.llm[-1]
        sections.append(
            Section(
                "llm",
                "Language-model accounting",
                f"Cumulative use of the language model up to generation {gen}.",
                table=[["quantity", "total"], *[[k, _fmt(v)] for k, v in acc.items()]],
                figures=_some([("cumulative language-model use", figures.llm_figure(data))]),
            )
        )
    sections += _export_sections(data, reference, pairs)
    html = render(
        title=f"personaevo run: {files.path.name} ({space.name})",
        context=space.context,
        notes=data.notes,
        facts=facts,
        sections=sections,
        run=str(files.path),
    )
    return html, data


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    personas: str | Path | None = None,
    axes: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``); an existing
    file is an :class:`InputError` unless ``force``."""
    path = Path(out) if out is not None else Path(run) / "report.html"
    if path.exists() and not force:
        raise InputError(f"{path}: already exists; use --force to overwrite it, or another --out")
    html, _ = build_report(run, personas, axes)
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return path


def _export_sections(data: ReportData, reference, pairs) -> list[Section]:
    export = data.export
    run = data.files.path
    if export is None:
        return [
            Section(
                "export",
                "Exported personas",
                f"No export of this run yet: run `personaevo export --run {run}` (or pass "
                "--personas FILE) to see the exported personas here.",
            )
        ]
    text = f"{len(export.native):,} personas from {export.path}."
    table = None
    summary = export.summary
    if summary is not None:
        text += (
            f" Selected by {summary.select} from a pool of {summary.pool:,}; "
            f"seed {summary.seed}; dataset card: {summary.card}."
        )
        table = [
            ["metric", "better", "exported", "density-matched sample"],
            *metrics_rows(summary.exported_metrics, summary.density_matched_metrics),
        ]
    sections = [
        Section(
            "export",
            "Exported personas over the reference density",
            text + f" {export.rare.mean():.0%} of them are in a rare cell or have a rare "
            "combination (red rings when they are at most 30%). Colour: rarity; grey: the "
            "reference population.",
            figures=figures.projection_figures(data, reference, pairs),
        ),
        Section(
            "marginals",
            "Marginals against the reference",
            "Share of personas per level (or density per interval) of each axis.",
            figures=_some([("marginals", figures.marginals_figure(data, reference))]),
        ),
    ]
    if table is not None:
        sections.append(
            Section(
                "metrics",
                "Exported set against a density-matched sample of the same size",
                table=table,
            )
        )
    return sections


def _outcome_table(data: ReportData) -> list[list[str]]:
    kinds = sorted({k for c in data.outcomes.values() for k in c}, key=lambda k: (k != "ok", k))
    rows = [["generation", *kinds]]
    for g in data.generations:
        rows.append([str(g), *[str(data.outcomes[g][k]) for k in kinds]])
    return rows


def _some(items: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    return [(caption, image) for caption, image in items if image is not None]


def _fmt(value) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
