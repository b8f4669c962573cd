"""Terminal tables of metric reports (rich): the full table, one column per population,
and the summary that fits an 80-column terminal, one row per population."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.markup import escape
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


_SHORT = {
    "support_coverage": "support",
    "plausible_rare_hits": "plaus.rare",
    "rare_hits": "rare",
    "plausibility": "plaus",
    "mc_coverage": "mc_cov",
    "tway_coverage": "tway",
    "consequential_plausible_hits": "conseq.pl",
    "consequential_hits": "conseq",
    "chamfer_coverage": "chamfer",
    "copy_share": "copies",
    "min_pairwise_distance": "min_dist",
    "mean_pairwise_distance": "mean_dist",
    "duplicate_rate": "dupes",
    "grid_coverage": "grid_cov",
    "kl_to_uniform": "kl",
    "pairwise_kl": "pair_kl",
    "hull_volume": "hull",
}


def short_metric_name(name: str) -> str:
    """A column name for a :meth:`ScoreReport.flat` name: ``reference.rare_hits_tway.3``
    -> ``rare.3`` (the direction arrow is added by the tables)."""
    parts = name.split(".")
    if parts[0] == "reference":
        parts = parts[1:]
    key = parts[0].removesuffix("_tway")
    return ".".join([_SHORT.get(key, key), *parts[1:]])


def counts_text(counts: Mapping[str, int]) -> str:
    """``invalid_personas 3, timeout 1`` (largest first), or ``none``."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v}" for k, v in items) or "none"


def best_by_objective(
    reports: Mapping[str, ScoreReport | None], objectives: list[str]
) -> dict[str, tuple[str, float]]:
    """Per objective, the population that does best on it and its value."""
    best: dict[str, tuple[str, float]] = {}
    for name in objectives:
        sign = 1.0 if ScoreReport.direction(name) == "higher" else -1.0
        for label, report in reports.items():
            value = report.flat().get(name) if report is not None else None
            if value is None:
                continue
            if name not in best or sign * value > sign * best[name][1]:
                best[name] = (label, value)
    return best


def summary_table(
    reports: Mapping[str, ScoreReport | None],
    objectives: list[str],
    status: Mapping[str, str] | None = None,
    title: str = "",
) -> Table:
    """One row per population: its status, validity and each objective (3 decimals),
    the best value of each column in bold. Fits 80 columns for up to 5 objectives."""
    columns = [name for name in objectives if name != "validity"]
    best = best_by_objective(reports, ["validity", *columns])
    table = Table(
        title=title or None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("program", no_wrap=True, max_width=20, overflow="ellipsis")
    table.add_column("status", no_wrap=True, max_width=12, overflow="ellipsis")
    for name in ["validity", *columns]:
        arrow = "↑" if ScoreReport.direction(name) == "higher" else "↓"
        header = "valid" if name == "validity" else short_metric_name(name)
        table.add_column(f"{header} {arrow}", justify="right", no_wrap=True)
    for label, report in reports.items():
        flat = report.flat() if report is not None else {}
        cells = []
        for name in ["validity", *columns]:
            value = flat.get(name)
            text = "-" if value is None else f"{value:.3f}"
            if name in best and best[name][0] == label:
                text = f"[bold]{text}[/bold]"
            cells.append(text)
        table.add_row(escape(label), escape((status or {}).get(label, "ok")), *cells)
    return table
