"""Terminal tables of metric reports (rich), one column per population."""

from __future__ import annotations

from rich.table import Table

from personaevo.metrics import ScoreReport
from personaevo.metrics.report import format_number
from personaevo.spaces import TraitSpace


def report_table(
    reports: dict[str, ScoreReport | None], title: str = "", status: dict[str, str] | None = None
) -> Table:
    """Side-by-side metrics; the arrow after each name says which way is better. A
    population without a report (a program that failed) shows its ``status``."""
    table = Table(title=title or None, show_lines=False)
    table.add_column("metric", no_wrap=True)
    for label in reports:
        table.add_column(label, justify="right")
    if status:
        table.add_row("status", *[status.get(label, "ok") for label in reports])
    present = [r for r in reports.values() if r is not None]
    if not present:
        return table
    first = present[0]
    blank = first.model_copy(update={"reference": None})
    reports = {label: r if r is not None else blank for label, r in reports.items()}
    failed = {label for label, r in reports.items() if r is blank}
    table.add_row(
        "personas (valid)",
        *[
            "n/a" if label in failed else f"{r.n_personas} ({r.n_valid})"
            for label, r in reports.items()
        ],
    )
    flats = [{} if label in failed else r.flat() for label, r in reports.items()]
    for name in first.flat():
        arrow = "↑" if ScoreReport.direction(name) == "higher" else "↓"
        table.add_row(f"{name} {arrow}", *[format_number(f.get(name)) for f in flats])
    for k, config in enumerate(first.consequential):
        table.add_row(
            f"  in {config.name}",
            *[
                "n/a" if label in failed else str(r.consequential[k].personas)
                for label, r in reports.items()
            ],
        )
    if first.reference is not None:
        table.add_row(
            "rare cells / 2-way rare combos",
            *[
                f"{r.reference.rare_hits.total} / {r.reference.rare_hits_tway.get('2').total}"
                if r.reference and "2" in r.reference.rare_hits_tway
                else "n/a"
                for r in reports.values()
            ],
        )
    return table


def space_table(space: TraitSpace) -> Table:
    """Axes of a space with their kind, values and bins."""
    table = Table(title=f"{space.name} v{space.version}: {space.dim} axes")
    for column in ("axis", "kind", "values", "bins", "description"):
        table.add_column(column)
    for axis in space.axes:
        if axis.kind == "continuous":
            values = f"[{axis.low:g}, {axis.high:g}]"
        else:
            values = ", ".join(str(v) for v in axis.values)
        table.add_row(axis.name, axis.kind, values, str(axis.n_bins), axis.description)
    return table
