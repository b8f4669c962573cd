"""The dataset card: a Markdown file written beside the exported personas.

It has a YAML header as Hugging Face dataset cards do, then: what the set is, the space
and reference population, the generator programs and what each gave, the metrics table
of the exported set next to a density-matched sample of the same size, the rare and
consequential counts, the rare cells (or combinations) never reached, the record fields
and how to make the set again.
"""

from __future__ import annotations

from personaevo.export.models import ExportSummary
from personaevo.metrics import ScoreReport
from personaevo.metrics.report import format_number

MAX_LISTED = 100

FIELDS = [
    (
        "id",
        "`<space>-000001`, in selection order: the required personas first, then the ones "
        "the method added, in the order it added them (for maximin every prefix of those is "
        "spread out)",
    ),
    ("traits", "one value per axis of the space: the persona's position (see Positions)"),
    ("declared_traits", "the traits the program declared (only when positions are measured)"),
    ("description", "the program's text for the persona, or null"),
    ("profile", "JSON text of the program's profile facts, or null"),
    ("rarity", "share of reference respondents in denser places (1 = rarest), or null"),
    (
        "copy_of_respondent",
        "whether the persona copies a reference respondent (within a tenth of the median "
        "gap between respondents), or null without a reference",
    ),
    ("cell", "the cell id: one bin per axis"),
    ("rare", "in a rare cell or with a rare combination"),
    ("rare_cell", "in one of the reference's rare cells"),
    ("rare_combinations", "the rare t-way bin combinations the persona has"),
    ("consequential", "names of the consequential configurations the persona is in"),
    ("required", "kept to represent a rare or consequential cell the pool reached"),
    ("provenance", "generator, program_hash, seed, n, source_id: how to generate it again"),
    ("space, space_version", "the trait space"),
]


def size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` tag for ``n`` rows."""
    for limit, tag in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return tag
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def metrics_rows(exported: ScoreReport, baseline: ScoreReport | None) -> list[list[str]]:
    """Rows ``metric, better, exported, density-matched`` of two reports."""
    flat_e = exported.flat()
    flat_b = baseline.flat() if baseline is not None else {}
    rows = [
        [
            "personas (valid)",
            "",
            f"{exported.n_personas} ({exported.n_valid})",
            f"{baseline.n_personas} ({baseline.n_valid})" if baseline else "n/a",
        ]
    ]
    for name, value in flat_e.items():
        better = "higher" if ScoreReport.direction(name) == "higher" else "lower"
        other = format_number(flat_b.get(name)) if baseline is not None else "n/a"
        rows.append([name, better, format_number(value), other])
    return rows


def render_card(summary: ExportSummary, command: str) -> str:
    """The Markdown dataset card of an export."""
    s = summary
    lines = [
        "---",
        f'pretty_name: "personaevo personas: {s.space} v{s.space_version}"',
        "size_categories:",
        f"  - {size_category(s.exported)}",
        "tags:",
        "  - synthetic",
        "  - personas",
        "  - safety-testing",
        "  - personaevo",
        "---",
        "",
        f"# Coverage-optimized personas: {s.space} v{s.space_version}",
        "",
        f"> {s.space_context.strip()}",
        "",
        f"**{s.exported:,} personas** (asked for {s.requested:,}), selected by `{s.select}` "
        f"from a pool of {s.pool:,} distinct valid personas that {len(s.programs)} generator "
        f"programs of the run's Pareto front wrote in the sandbox ({s.pool_requested:,} "
        f"asked for). Seed {s.seed}. File: `{s.output}` ({s.format}). Made {s.created}.",
        "",
    ]
    if s.shortfall:
        lines += [f"**Fewer than asked:** {s.shortfall}", ""]
    lines += ["## Positions", "", *positions_text(s), ""]
    lines += ["## Space and reference population", ""]
    if s.reference:
        lines += [
            f"Reference: {s.reference} ({s.reference_respondents:,} respondents). Rare cells "
            f"and combinations are the lowest-mass ones holding at most "
            f"{s.rare_mass_fraction:.0%} of the reference's mass; rarity is read on the "
            "reference's kernel density.",
            "",
            f"Copies of respondents: {s.copies:,} of the exported personas lie within a tenth "
            "of the median gap between neighbouring respondents of a respondent whom fewer "
            "than 5 share a position with (`copy_of_respondent`)"
            + (
                f"; {s.copies_dropped:,} such personas were dropped before selection."
                if s.copies_dropped
                else "; none were dropped (`personaevo export --drop-copies` would)."
            ),
            "",
        ]
    else:
        lines += ["The run has no reference population: no rarity, no rare cells.", ""]
    lines += [f"Run directory: `{s.run}`.", "", "## Generator programs", ""]
    rows = []
    for p in s.programs:
        failures = ", ".join(f"{k}: {v}" for k, v in p.failures.items()) or "none"
        invalid = ", ".join(f"{k}: {v}" for k, v in p.invalid_reasons.items())
        rows.append(
            [
                p.name,
                f"`{p.program_hash[:12]}`",
                str(p.runs),
                f"{p.returned:,}",
                f"{p.invalid:,}" + (f" ({invalid})" if invalid else ""),
                f"{p.duplicates:,}",
                f"{p.pooled:,}",
                f"{p.exported:,}",
                failures,
            ]
        )
    header = ["program", "hash", "runs", "returned", "invalid", "duplicates", "pooled"]
    lines += _table([*header, "exported", "failed runs"], rows)
    lines += [
        "",
        "## Metrics: exported set and a density-matched sample of the same size",
        "",
        "The density-matched sample is drawn from the reference's kernel density "
        "(what statistical matching to the population would give). Both are scored with "
        f"the same seed ({s.seed}) by `personaevo.metrics.score`.",
        "",
    ]
    lines += _table(
        ["metric", "better", "exported", "density-matched"],
        metrics_rows(s.exported_metrics, s.density_matched_metrics),
    )
    lines += ["", "## Rare and consequential coverage", ""]
    rows = [
        [
            r.kind,
            f"{r.total:,}",
            f"{r.pool:,}",
            f"{r.exported:,}",
            "n/a" if r.density_matched is None else f"{r.density_matched:,}",
        ]
        for r in s.rare
    ]
    if rows:
        lines += _table(["rare", "in reference", "pool", "exported", "density-matched"], rows)
        lines.append("")
    rows = [
        [
            c.name,
            c.description,
            f"{c.pool:,}",
            f"{c.exported:,}",
            "n/a" if c.density_matched is None else f"{c.density_matched:,}",
        ]
        for c in s.consequential
    ]
    if rows:
        lines += _table(
            ["configuration", "description", "pool", "exported", "density-matched"], rows
        )
        lines.append("")
    lines += [
        "Kept whatever the selection: at least one persona for each entry the pool reached "
        "(entries reached / kept):",
        "",
    ]
    lines += [f"- {kind}: {c.reached:,} / {c.kept:,}" for kind, c in s.required.items()]
    kind = s.unreached_rare_kind or "rare cells"
    lines += ["", f"## {kind[0].upper() + kind[1:]} never reached", ""]
    if not s.reference:
        lines.append("No reference population, so no rare cells.")
    elif not s.unreached_rare:
        lines.append(f"None: the exported set reaches every one of the {s.unreached_rare_kind}.")
    else:
        lines.append(
            f"{len(s.unreached_rare):,} of the reference's {s.unreached_rare_kind} have no "
            "exported persona:"
        )
        lines.append("")
        lines += [f"- `{label}`" for label in s.unreached_rare[:MAX_LISTED]]
        if len(s.unreached_rare) > MAX_LISTED:
            lines.append(
                f"- ... and {len(s.unreached_rare) - MAX_LISTED:,} more (all in "
                f"`{_summary_name(s.output)}`)"
            )
    lines += ["", "## Fields", ""]
    lines += _table(["field", "meaning"], [[f"`{k}`", v] for k, v in FIELDS])
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import datasets, pandas",
    ]
    if s.format == "jsonl":
        lines += [
            f'ds = datasets.load_dataset("json", data_files="{s.output}", split="train")',
            f'df = pandas.read_json("{s.output}", lines=True)',
        ]
    elif s.format == "parquet":
        lines += [
            f'ds = datasets.load_dataset("parquet", data_files="{s.output}", split="train")',
            f'df = pandas.read_parquet("{s.output}")',
        ]
    else:
        lines += [
            f'ds = datasets.load_dataset("csv", data_files="{s.output}", split="train")',
            f'df = pandas.read_csv("{s.output}")',
        ]
    lines += [
        "```",
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        "Each persona's `provenance` gives the program, seed and `n` that wrote it: running "
        "that program with them in the sandbox gives it again"
        + ("" if s.assess == "explicit" else f", and measuring it by `{s.assess}` its traits")
        + ". The personas are synthetic: they reach configurations of the space, they do "
        "not describe real people.",
    ]
    for note in s.notes:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


METHODS = {
    "explicit": "the traits each program declared (`--assess explicit`)",
    "embedding": "measured from each persona's text by sentence embeddings projected on the "
    "axes' anchor texts (`--assess embedding`)",
    "questionnaire": "measured from each persona's text by a language model answering the "
    "space's Likert items in persona (`--assess questionnaire`)",
}


def positions_text(s: ExportSummary) -> list[str]:
    """How the exported positions were read, and what the measurement dropped."""
    lines = [f"Positions (`traits`, and everything computed from them) are {METHODS[s.assess]}."]
    a = s.assessment
    if s.assess == "explicit" or a is None:
        return lines
    lines[0] += (
        " The declared traits are kept as `declared_traits`; selection, cells, rarity, rare "
        "tags and the metrics below use the measured ones."
    )
    rate = a.personas / a.seconds if a.seconds > 0 else float("nan")
    lines += [
        "",
        f"{a.measured:,} of the {a.personas:,} personas the programs wrote were measured "
        f"({a.seconds:.1f} s, {rate:,.0f} personas/s).",
    ]
    if a.unmeasured:
        dropped = ", ".join(f"{kind}: {count:,}" for kind, count in a.unmeasured.items())
        lines[-1] += f" Not measured, so not exported: {dropped}."
    model = a.detail.get("model") or a.detail.get("llm")
    if model:
        lines[-1] += f" Model: `{model}`."
    if "parse_rate" in a.detail:
        lines[-1] += f" Answers parsed: {a.detail['parse_rate']:.1%}."
    return lines


def _summary_name(output: str) -> str:
    from pathlib import Path

    from personaevo.export.api import export_paths

    return export_paths(Path(output))[1].name
