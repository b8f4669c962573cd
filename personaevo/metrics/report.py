"""``score()``: every metric of a persona population in one JSON-serialisable report.

Metrics are computed on the *valid* personas' encodings (see :mod:`personaevo.grid`);
invalid personas count against validity, against plausibility (a share of all personas
submitted) and, because the coverage radius is calibrated for the number of personas
submitted, against coverage too. With a reference, a valid persona that copies a
respondent (:mod:`personaevo.metrics.novelty`) is counted (``reference.copies``) and
left out of every metric but validity: a copy earns no objective.
``docs/metrics.md`` says what each metric rewards.
Every random choice (probe points, Sobol scrambling, pair sampling, reference
subsamples) derives from ``seed``: the same input and seed give the same report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from personaevo.metrics import cells, geometry, novelty
from personaevo.personas import (
    CheckedPopulation,
    InvalidPersona,
    Malformed,
    Persona,
    check_personas,
)
from personaevo.reference import ReferencePopulation
from personaevo.spaces import TraitSpace, resolve_space


class Count(BaseModel):
    """``covered`` of ``total`` entries, and their ratio (0 when ``total`` is 0)."""

    covered: int
    total: int
    fraction: float


class HullVolume(BaseModel):
    value: float | None
    method: str  # "qhull", "exact" (d = 1), "degenerate" or "not computed"
    note: str = ""


class ConsequentialHits(BaseModel):
    name: str
    personas: int
    share: float
    hit: bool
    plausible_personas: int | None = None  # of them, with every pair in the reference support


class ReferenceMetrics(BaseModel):
    """Metrics against a reference population (cells and t-way combinations)."""

    source: str
    respondents: int
    rare_mass_fraction: float
    support_coverage: Count  # support cells occupied / support cells
    plausibility: float  # distinct valid personas in a support cell / all personas scored
    rare_hits: Count  # rare cells occupied / rare cells (flat(): the fraction)
    support_coverage_tway: dict[str, Count]
    plausibility_tway: dict[str, float]
    rare_hits_tway: dict[str, Count]
    plausible_rare_hits_tway: dict[str, Count]  # rare t-way reached by personas plausible at t-1
    chamfer_coverage: float
    copies: int = 0  # valid personas that copy a respondent (metrics.novelty); never scored
    copy_share: float = 0.0  # copies / all personas scored
    copy_threshold: float = 0.0  # unit-cube distance to a respondent that makes a copy
    respondent_gap: float = 0.0  # median distance between neighbouring respondents


class ScoreReport(BaseModel):
    """All metrics of one population. ``DIRECTIONS`` says which way is better."""

    DIRECTIONS: ClassVar[dict[str, str]] = {
        "validity": "higher",
        "duplicate_rate": "lower",
        "mc_coverage": "higher",
        "dispersion": "lower",
        "grid_coverage": "higher",
        "kl_to_uniform": "lower",
        "pairwise_kl": "lower",
        "min_pairwise_distance": "higher",
        "mean_pairwise_distance": "higher",
        "hull_volume": "higher",
        "tway_coverage": "higher",
        "support_coverage": "higher",
        "plausibility": "higher",
        "rare_hits": "higher",
        "chamfer_coverage": "higher",
        "consequential_hits": "higher",
        "consequential_plausible_hits": "higher",
        "plausible_rare_hits": "higher",
        "copy_share": "lower",
    }

    COMPLETE_SET_ONLY: ClassVar[frozenset[str]] = frozenset(
        {
            "duplicate_rate",
            "min_pairwise_distance",
            "mean_pairwise_distance",
            "kl_to_uniform",
            "pairwise_kl",
            "reference.chamfer_coverage",
        }
    )
    """:meth:`flat` names of metrics that are means or extremes over the *valid* personas,
    so that turning a persona invalid (or leaving it out) can improve them: two valid
    personas far apart have a larger minimum distance than n well spread ones, dropping a
    duplicate lowers the KL, dropping an outlier raises chamfer coverage. As objectives
    they count only for complete sets, all n personas valid (see
    :func:`personaevo.evolution.loop.objective_values` and ``docs/metrics.md``)."""

    space: str
    space_version: str
    seed: int
    n_personas: int
    n_valid: int
    validity: float
    invalid_reasons: dict[str, int]
    invalid_examples: list[InvalidPersona]
    duplicate_rate: float
    mc_coverage: float
    coverage_radius: float
    radius_multiplier: float
    n_probes: int
    dispersion: float
    grid_coverage: Count
    kl_to_uniform: float | None
    pairwise_kl: float | None
    min_pairwise_distance: float
    mean_pairwise_distance: float
    mean_pairwise_method: str
    hull_volume: HullVolume
    tway_coverage: dict[str, Count]
    consequential: list[ConsequentialHits]
    reference: ReferenceMetrics | None
    seconds: dict[str, float]

    def flat(self) -> dict[str, float | None]:
        """Headline numbers by dotted name (e.g. ``reference.rare_hits_tway.2``). Counts
        are given as shares of what could be reached (``rare_hits``: rare combinations
        reached / rare combinations), so that they read the same at any ``n``."""
        out: dict[str, float | None] = {
            "validity": self.validity,
            "duplicate_rate": self.duplicate_rate,
            "mc_coverage": self.mc_coverage,
            "dispersion": self.dispersion,
            "grid_coverage": self.grid_coverage.fraction,
            "kl_to_uniform": self.kl_to_uniform,
            "pairwise_kl": self.pairwise_kl,
            "min_pairwise_distance": self.min_pairwise_distance,
            "mean_pairwise_distance": self.mean_pairwise_distance,
            "hull_volume": self.hull_volume.value,
        }
        for t, count in self.tway_coverage.items():
            out[f"tway_coverage.{t}"] = count.fraction
        out["consequential_hits"] = float(sum(c.hit for c in self.consequential))
        ref = self.reference
        if ref is not None:
            out["consequential_plausible_hits"] = float(
                sum(bool(c.plausible_personas) for c in self.consequential)
            )
            out["reference.copy_share"] = ref.copy_share
            for t, count in ref.plausible_rare_hits_tway.items():
                out[f"reference.plausible_rare_hits_tway.{t}"] = count.fraction
            out["reference.support_coverage"] = ref.support_coverage.fraction
            out["reference.plausibility"] = ref.plausibility
            out["reference.rare_hits"] = ref.rare_hits.fraction
            for t in ref.support_coverage_tway:
                out[f"reference.support_coverage_tway.{t}"] = ref.support_coverage_tway[t].fraction
                out[f"reference.plausibility_tway.{t}"] = ref.plausibility_tway[t]
                out[f"reference.rare_hits_tway.{t}"] = ref.rare_hits_tway[t].fraction
            out["reference.chamfer_coverage"] = ref.chamfer_coverage
        return out

    @classmethod
    def direction(cls, name: str) -> str:
        """ "higher" or "lower" for a :meth:`flat` name."""
        parts = name.split(".")
        key = parts[1] if parts[0] == "reference" else parts[0]
        key = key.removesuffix("_tway")
        return cls.DIRECTIONS[key]


def _count(covered: int, total: int) -> Count:
    return Count(covered=covered, total=total, fraction=covered / total if total else 0.0)


def score(
    personas: Iterable[Persona | dict | Malformed] | CheckedPopulation,
    space: TraitSpace | str,
    reference: ReferencePopulation | None = None,
    seed: int = 0,
    n_probes: int = 10_000,
    tway: tuple[int, ...] = (2, 3),
    hull_max_dim: int = 6,
) -> ScoreReport:
    """Score a persona population; see :class:`ScoreReport` for the fields.

    Parameters
    ----------
    personas : records (Persona, dict, or Malformed lines) or an already checked population.
    space : the trait space, a built-in name or a file path.
    reference : optional reference population for support, plausibility, rarity, chamfer.
    seed : seeds probes, Sobol calibration and sampled estimates.
    n_probes : uniform probe points from the feasible region for MC coverage/dispersion.
    tway : strengths t for t-way coverage (and, with a reference, t-way rarity/support).
    hull_max_dim : largest d for which the convex hull volume is computed with Qhull.
    """
    space = resolve_space(space)
    timer = _Timer()
    checked = (
        personas if isinstance(personas, CheckedPopulation) else check_personas(personas, space)
    )
    timer.lap("validate")
    grid = space.grid
    rng = np.random.default_rng([seed, 0xC0DE])
    native = checked.native
    copy_mask = np.zeros(len(native), dtype=bool)
    if reference is not None and len(native):
        copy_mask = novelty.copy_detector(reference).is_copy(grid.unit(native))
        native = native[~copy_mask]  # copies of respondents earn nothing (module docstring)
    unit = grid.unit(native)
    bins = grid.bins(native)
    n_total, n_valid, n_scored = checked.n_total, len(checked.valid), len(native)
    empty = n_scored == 0

    if n_total:
        radius, multiplier = geometry.coverage_radius(grid, n_total, n_probes, seed)
    else:
        radius, multiplier = 0.0, 0.0
    timer.lap("calibrate")
    probes = geometry.probe_points(grid, n_probes, seed)
    if empty:
        mc_coverage, dispersion = 0.0, math.sqrt(space.dim)
    else:
        mc_coverage, dispersion = geometry.coverage_and_dispersion(unit, probes, radius)
    timer.lap("coverage")

    occupied = len(cells.occupied_cells(grid, bins)) if not empty else 0
    hull = geometry.hull_volume(unit, hull_max_dim)
    timer.lap("hull")
    mean_pair, mean_method = geometry.mean_pairwise_distance(unit, rng)
    min_pair = geometry.min_pairwise_distance(unit)
    timer.lap("pairwise")
    tway_counts = {}
    for t in tway:
        if t <= space.dim:
            c = cells.tway_coverage(grid, bins, t) if not empty else None
            total = sum(int(m.sum()) for _, m in grid.tway_feasible(t))
            tway_counts[str(t)] = _count(c.covered if c else 0, total)
    timer.lap("tway")

    pair_plausible = None
    if reference is not None and space.dim >= 2:
        pair_plausible = cells.plausible_rows(reference, bins, 2)
    consequential = []
    for config in space.consequential:
        region = grid.region_mask(native, config.where) if not empty else np.zeros(0, bool)
        inside = int(region.sum())
        consequential.append(
            ConsequentialHits(
                name=config.name,
                personas=inside,
                share=inside / n_total if n_total else 0.0,
                hit=inside > 0,
                plausible_personas=None
                if pair_plausible is None
                else int((region & pair_plausible).sum()),
            )
        )
    ref_metrics = None
    if reference is not None:
        distinct = np.sort(np.unique(native, axis=0, return_index=True)[1])
        ref_metrics = _reference_metrics(reference, unit, bins[distinct], tway, n_total)
        detector = novelty.copy_detector(reference)
        ref_metrics.copies = int(copy_mask.sum())
        ref_metrics.copy_share = ref_metrics.copies / n_total if n_total else 0.0
        ref_metrics.copy_threshold = detector.threshold
        ref_metrics.respondent_gap = detector.median_gap
    timer.lap("reference")

    unique_rows = len(np.unique(native, axis=0)) if not empty else 0
    kl_to_uniform = None if empty else cells.cell_kl(grid, bins)
    pairwise_kl = None if empty or space.dim < 2 else cells.pairwise_kl(grid, bins)
    timer.lap("cells")
    return ScoreReport(
        space=space.name,
        space_version=space.version,
        seed=seed,
        n_personas=n_total,
        n_valid=n_valid,
        validity=checked.validity,
        invalid_reasons=checked.reason_counts(),
        invalid_examples=checked.invalid[:10],
        duplicate_rate=1.0 - unique_rows / n_scored if n_scored else 0.0,
        mc_coverage=mc_coverage,
        coverage_radius=radius,
        radius_multiplier=multiplier,
        n_probes=n_probes,
        dispersion=dispersion,
        grid_coverage=_count(occupied, grid.n_feasible_cells),
        kl_to_uniform=kl_to_uniform,
        pairwise_kl=pairwise_kl,
        min_pairwise_distance=min_pair,
        mean_pairwise_distance=mean_pair,
        mean_pairwise_method=mean_method,
        hull_volume=HullVolume(value=hull.value, method=hull.method, note=hull.note),
        tway_coverage=tway_counts,
        consequential=consequential,
        reference=ref_metrics,
        seconds=timer.laps,
    )


def _reference_metrics(
    reference: ReferencePopulation,
    unit: np.ndarray,
    distinct_bins: np.ndarray,
    tway: tuple[int, ...],
    n_total: int,
) -> ReferenceMetrics:
    """Cell metrics of the distinct valid personas (``distinct_bins``: one row per distinct
    trait vector). Plausibility is ``distinct plausible personas / n_total``, a share of
    all personas scored, invalid ones included: a program cannot raise it by writing
    fewer valid personas, nor by repeating one plausible persona."""
    bins = distinct_bins

    def share(plausible: int) -> float:
        return plausible / n_total if n_total else 0.0

    cell_stats = cells.reference_cell_stats(reference, bins)
    support_t, plaus_t, rare_t, plausible_rare_t = {}, {}, {}, {}
    plausible_at: dict[int, np.ndarray] = {0: np.ones(len(bins), dtype=bool)}
    for t in sorted(tway):
        if t > reference.space.dim:
            continue
        if t - 1 not in plausible_at:
            plausible_at[t - 1] = cells.plausible_rows(reference, bins, t - 1)
        stats = cells.reference_tway_stats(reference, bins, t, among=plausible_at[t - 1])
        plausible_at[t] = stats.plausible_rows
        support_t[str(t)] = _count(stats.support_coverage.covered, stats.support_coverage.total)
        plaus_t[str(t)] = share(stats.plausible)
        rare_t[str(t)] = _count(stats.rare_hits.covered, stats.rare_hits.total)
        among = stats.rare_hits_among
        plausible_rare_t[str(t)] = _count(among.covered, among.total)
    ref_unit, d_ref = reference.chamfer_points()
    return ReferenceMetrics(
        source=reference.summary.source,
        respondents=len(reference.native),
        rare_mass_fraction=reference.rare_mass_fraction,
        support_coverage=_count(
            cell_stats.support_coverage.covered, cell_stats.support_coverage.total
        ),
        plausibility=share(cell_stats.plausible),
        rare_hits=_count(cell_stats.rare_hits.covered, cell_stats.rare_hits.total),
        support_coverage_tway=support_t,
        plausibility_tway=plaus_t,
        rare_hits_tway=rare_t,
        plausible_rare_hits_tway=plausible_rare_t,
        chamfer_coverage=geometry.chamfer_coverage(unit, ref_unit, d_ref),
    )


class _Timer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 4)
        self._last = now


def format_number(value: Any) -> str:
    """Compact text for a metric value in tables."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
