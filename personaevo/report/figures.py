"""The report's figures, drawn with matplotlib's object API (no pyplot state) and returned
as base64 PNG text for ``<img src="data:image/png;base64,...">``. Margins are set by hand
(``subplots_adjust``) rather than by tight or constrained layout, which draw each figure
two or three times."""

from __future__ import annotations

import base64
import io
import itertools
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from personaevo.metrics import ScoreReport
from personaevo.reference import ReferencePopulation
from personaevo.report.data import ReportData
from personaevo.spaces import ContinuousAxis, TraitSpace

DPI = 90


def png(fig: Figure) -> str:
    """The figure as base64 PNG text."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # margins are set per figure: one draw
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _value(name: str, signed: np.ndarray) -> np.ndarray:
    """Metric values from fitness values (minimised metrics are stored negated)."""
    return signed if ScoreReport.direction(name) == "higher" else -signed


def _short(name: str) -> str:
    arrow = "↑" if ScoreReport.direction(name) == "higher" else "↓"
    return f"{name.removeprefix('reference.')} {arrow}"


def _per_generation(ax, title: str, legend: bool) -> None:
    """The look of a panel with generations on x: title, integer ticks, grid, legend."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


def pareto_figure(data: ReportData) -> str | None:
    """The Pareto front after each generation, projected on each pair of objectives."""
    objectives = data.files.objectives
    if len(data.points) == 0:
        return None
    pairs = list(itertools.combinations(range(len(objectives)), 2)) or [(0, 0)]
    fig = Figure(figsize=(4.2 * len(pairs), 3.8))
    gens = data.generations
    colors = {g: (i / max(len(gens) - 1, 1)) for i, g in enumerate(gens)}
    for p, (a, b) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), p + 1)
        xs = _value(objectives[a], data.points[:, a])
        ys = _value(objectives[b], data.points[:, b])
        ax.scatter(xs, ys, s=8, color="0.8", label="every program evaluated", zorder=1)
        for g in gens:
            front = data.fronts[g]
            if len(front) == 0:
                continue
            last = g == gens[-1]
            ax.scatter(
                xs[front],
                ys[front],
                s=40 if last else 14,
                c=[colors[g]] * len(front),
                cmap="viridis",
                vmin=0,
                vmax=1,
                edgecolors="black" if last else "none",
                label="final front" if last else None,
                zorder=2 + colors[g],
            )
        ax.set_xlabel(_short(objectives[a]))
        ax.set_ylabel(_short(objectives[b]))
        ax.grid(alpha=0.3)
        if p == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        f"Pareto front after each generation (colour: generation {gens[0]} dark, {gens[-1]} light)"
    )
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.88, wspace=0.3)
    return png(fig)


def objectives_figure(data: ReportData) -> str | None:
    """The islands' max and mean of each objective per generation (the logbook)."""
    rows = [r for r in data.logbook if r.max and r.mean]
    objectives = data.files.objectives
    if not rows:
        return None
    fig = Figure(figsize=(4.2 * len(objectives), 3.2))
    gens = [r.gen for r in rows]
    for i, name in enumerate(objectives):
        ax = fig.add_subplot(1, len(objectives), i + 1)
        best = _value(name, np.array([r.max[i] for r in rows]))
        mean = _value(name, np.array([r.mean[i] for r in rows]))
        mean = np.where(np.abs(mean) > 1e8, np.nan, mean)  # failed programs score -1e9
        ax.plot(gens, best, marker="o", label="best of the islands")
        ax.plot(gens, mean, marker=".", linestyle="--", label="mean of the islands")
        _per_generation(ax, _short(name), legend=i == 0)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.3)
    return png(fig)


def coverage_figure(data: ReportData) -> str | None:
    """Coverage and rare-hit metrics per generation: best so far and the median of the
    programs evaluated in that generation."""
    if not data.tracked:
        return None
    names = list(data.tracked)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        series = data.tracked[name]
        ax.plot(data.generations, series["best"], marker="o", label="best so far")
        ax.plot(
            data.generations, series["median"], marker=".", linestyle="--", label="median of gen."
        )
        _per_generation(ax, _short(name), legend=i == 0)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.93, wspace=0.3, hspace=0.5)
    return png(fig)


def failures_figure(data: ReportData) -> str | None:
    """Evaluations per generation by outcome (ok or failure kind), stacked."""
    kinds = sorted({k for c in data.outcomes.values() for k in c}, key=lambda k: (k != "ok", k))
    if not kinds:
        return None
    fig = Figure(figsize=(8, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    bottom = np.zeros(len(data.generations))
    for kind in kinds:
        counts = np.array([data.outcomes[g][kind] for g in data.generations], dtype=float)
        ax.bar(data.generations, counts, bottom=bottom, label=kind)
        bottom += counts
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("evaluations")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3, axis="y")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.95)
    return png(fig)


def llm_figure(data: ReportData) -> str | None:
    """Cumulative language-model calls, tokens and seconds per generation."""
    if not data.llm:
        return None
    gens = [g for g, _ in data.llm]
    fig = Figure(figsize=(12, 3.0))
    panels = [
        ("calls", ["calls"]),
        ("tokens", ["prompt_tokens", "completion_tokens"]),
        ("seconds", ["seconds"]),
    ]
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for key in keys:
            ax.plot(gens, [acc[key] for _, acc in data.llm], marker="o", label=key)
        _per_generation(ax, f"cumulative {title}", legend=True)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    return png(fig)


def _jitter(space: TraitSpace, native: np.ndarray, j: int, rng: np.random.Generator):
    """Plot coordinates of axis ``j``: values, or level indices spread within +-0.3."""
    if isinstance(space.axes[j], ContinuousAxis):
        return native[:, j]
    return native[:, j] + rng.uniform(-0.3, 0.3, len(native))


def _ticks(ax_set, space: TraitSpace, j: int) -> None:
    axis = space.axes[j]
    if not isinstance(axis, ContinuousAxis):
        ax_set(range(len(axis.values)), [str(v) for v in axis.values], fontsize=7)


def projection_figures(
    data: ReportData, reference: ReferencePopulation | None, pairs: list[tuple[int, int]]
) -> list[tuple[str, str]]:
    """``(caption, png)`` of the exported personas over the reference: PCA of the unit
    encoding, then each chosen pair of axes."""
    export = data.export
    if export is None:
        return []
    space = data.files.space
    grid = space.grid
    rng = np.random.default_rng(0)
    out = []
    unit = grid.unit(export.native)
    fit_on = reference.unit if reference is not None else unit
    pca = PCA(n_components=2, random_state=0).fit(fit_on)
    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    if reference is not None:
        ref_xy = pca.transform(reference.unit)
        hb = ax.hexbin(ref_xy[:, 0], ref_xy[:, 1], gridsize=40, cmap="Greys", bins="log", mincnt=1)
        fig.colorbar(hb, ax=ax, label="reference respondents (log)")
    xy = pca.transform(unit)
    _scatter(fig, ax, xy[:, 0], xy[:, 1], export)
    share = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of the reference's variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.97)
    out.append(("PCA of the unit-cube encoding (fitted on the reference)", png(fig)))
    for a, b in pairs:
        fig = Figure(figsize=(7, 5.5))
        ax = fig.add_subplot(1, 1, 1)
        if reference is not None:
            _reference_background(fig, ax, space, reference, a, b)
        xs = _jitter(space, export.native, a, rng)
        ys = _jitter(space, export.native, b, rng)
        _scatter(fig, ax, xs, ys, export)
        ax.set_xlabel(space.axes[a].name)
        ax.set_ylabel(space.axes[b].name)
        _ticks(ax.set_xticks, space, a)
        _ticks(ax.set_yticks, space, b)
        if not isinstance(space.axes[a], ContinuousAxis):
            ax.tick_params(axis="x", labelrotation=30)
        fig.subplots_adjust(left=0.17, right=0.98, bottom=0.16, top=0.97)
        out.append((f"{space.axes[a].name} against {space.axes[b].name}", png(fig)))
    return out


def _scatter(fig: Figure, ax, xs: np.ndarray, ys: np.ndarray, export) -> None:
    size = 6 if len(xs) > 5000 else 12
    if np.isfinite(export.rarity).any():
        sc = ax.scatter(
            xs, ys, s=size, c=export.rarity, cmap="plasma", vmin=0, vmax=1, rasterized=True
        )
        fig.colorbar(sc, ax=ax, label="rarity of the exported persona")
    else:
        ax.scatter(xs, ys, s=size, color="tab:orange", rasterized=True)
    if export.rare.any() and export.rare.mean() <= 0.3:  # rings for the few, not for most
        ax.scatter(
            xs[export.rare],
            ys[export.rare],
            s=size * 3,
            facecolors="none",
            edgecolors="red",
            linewidths=0.4,
            label="rare cell or combination",
        )
        ax.legend(fontsize=7, loc="upper right")


def _reference_background(fig: Figure, ax, space, reference, a: int, b: int) -> None:
    """The reference's mass over the two axes (bins of the cell grid), log scale."""
    edges = []
    for j in (a, b):
        axis = space.axes[j]
        if isinstance(axis, ContinuousAxis):
            edges.append(np.linspace(axis.low, axis.high, max(axis.bins, 10) + 1))
        else:
            edges.append(np.arange(len(axis.values) + 1) - 0.5)
    H, xe, ye = np.histogram2d(
        reference.native[:, a], reference.native[:, b], bins=edges, weights=reference.weights
    )
    H = H / H.sum()
    positive = H[H > 0]
    if len(positive) == 0:
        return
    mesh = ax.pcolormesh(
        xe, ye, np.ma.masked_equal(H.T, 0), cmap="Greys", norm=LogNorm(positive.min(), H.max())
    )
    fig.colorbar(mesh, ax=ax, label="reference mass (log)")


def marginals_figure(data: ReportData, reference: ReferencePopulation | None) -> str | None:
    """Each axis: the exported personas' distribution against the reference's."""
    export = data.export
    if export is None:
        return None
    space = data.files.space
    cols = 3
    rows = math.ceil(space.dim / cols)
    fig = Figure(figsize=(4.4 * cols, 2.8 * rows))
    for j, axis in enumerate(space.axes):
        ax = fig.add_subplot(rows, cols, j + 1)
        if isinstance(axis, ContinuousAxis):
            bins = np.linspace(axis.low, axis.high, 21)
            ax.hist(export.native[:, j], bins=bins, density=True, histtype="step", label="exported")
            if reference is not None:
                ax.hist(
                    reference.native[:, j],
                    bins=bins,
                    weights=reference.weights,
                    density=True,
                    histtype="step",
                    label="reference",
                )
        else:
            k = len(axis.values)
            x = np.arange(k)
            shares = np.bincount(export.native[:, j].astype(int), minlength=k) / len(export.native)
            ax.bar(x - 0.2, shares, width=0.4, label="exported")
            if reference is not None:
                ref = np.bincount(
                    reference.native[:, j].astype(int), weights=reference.weights, minlength=k
                )
                ax.bar(x + 0.2, ref / ref.sum(), width=0.4, label="reference")
            ax.set_xticks(x, [str(v) for v in axis.values], fontsize=7, rotation=30, ha="right")
        ax.set_title(axis.name, fontsize=9)
        if j == 0:
            ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.08, top=0.96, wspace=0.2, hspace=0.75)
    return png(fig)


def default_pairs(data: ReportData, reference: ReferencePopulation | None, count: int = 2):
    """The axis pairs where the exported set reaches the most rare 2-way combinations
    (declaration order without a reference or on ties)."""
    space = data.files.space
    if data.export is None or space.dim < 2:
        return []
    pairs = list(itertools.combinations(range(space.dim), 2))
    if reference is None:
        return pairs[:count]
    bins = space.grid.bins(data.export.native)
    reached = []
    for axes, _, rare in reference.tway(2):
        keys = np.unique(space.grid.tway_keys(bins, axes))
        reached.append(int(rare[keys].sum()))
    order = sorted(range(len(pairs)), key=lambda i: (-reached[i], i))
    return [pairs[i] for i in order[:count]]
