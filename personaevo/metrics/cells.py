"""Cell-grid and t-way combination metrics on bin matrices (``(n, d)`` integer arrays).

A *cell* fixes one bin on every axis; a *t-way combination* fixes bins on ``t`` axes,
the unit combinatorial testing counts (a covering array of strength t covers all of
them). In spaces of ten or more axes the full grid has millions of cells, so rarity and
support are measured on t-way combinations too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from personaevo.grid import SpaceGrid
from personaevo.reference import ReferencePopulation


def occupied_cells(grid: SpaceGrid, bins: np.ndarray) -> np.ndarray:
    """Distinct feasible cell keys occupied by at least one row."""
    keys, first = np.unique(grid.cell_keys(bins), return_index=True)
    return keys[grid.cells_feasible(bins[first])]


def grid_coverage(grid: SpaceGrid, bins: np.ndarray) -> tuple[float, int, int]:
    """``occupied feasible cells / feasible cells`` (higher is better), with both counts."""
    occupied = len(occupied_cells(grid, bins))
    feasible = grid.n_feasible_cells
    return occupied / feasible, occupied, feasible


def kl_to_uniform(counts: np.ndarray, n_support: int) -> float:
    """``KL(p || uniform over n_support) = sum_c p_c log(p_c n_support)`` in nats (lower is
    better; 0 only when every one of the ``n_support`` cells holds the same share)."""
    p = counts[counts > 0] / counts.sum()
    return float(np.sum(p * np.log(p)) + math.log(n_support))


def cell_kl(grid: SpaceGrid, bins: np.ndarray) -> float:
    """KL divergence of the occupied-cell histogram from uniform over feasible cells.
    With ``n`` distinct personas and ``F >> n`` cells it is ``log F - log n`` at best, so
    it mostly measures duplication; see :func:`pairwise_kl` for a finer reading."""
    _, counts = np.unique(grid.cell_keys(bins), return_counts=True)
    return kl_to_uniform(counts, grid.n_feasible_cells)


def pairwise_kl(grid: SpaceGrid, bins: np.ndarray) -> float:
    """Mean over axis pairs of the KL divergence of the pair's bin histogram from uniform
    over its feasible bin pairs (lower is better). Unlike the per-axis 20-bin KL of the
    public re-implementation, it sees joint structure and separates Sobol from random."""
    values = []
    for axes, feasible in grid.tway_feasible(2):
        counts = np.bincount(grid.tway_keys(bins, axes), minlength=len(feasible))
        values.append(kl_to_uniform(counts, int(feasible.sum())))
    return float(np.mean(values)) if values else 0.0


@dataclass
class TWayCount:
    covered: int
    total: int

    @property
    def fraction(self) -> float:
        return self.covered / self.total if self.total else 0.0


def tway_coverage(grid: SpaceGrid, bins: np.ndarray, t: int) -> TWayCount:
    """Feasible t-way bin combinations covered by at least one row, over all feasible
    t-way combinations (higher is better)."""
    covered = total = 0
    for axes, feasible in grid.tway_feasible(t):
        keys = np.unique(grid.tway_keys(bins, axes))
        covered += int(feasible[keys].sum())
        total += int(feasible.sum())
    return TWayCount(covered, total)


@dataclass
class ReferenceCellStats:
    support_coverage: TWayCount  # support entries occupied / support entries
    rare_hits: TWayCount  # rare entries occupied / rare entries
    plausible: int  # rows lying inside the support
    plausible_rows: np.ndarray | None = None  # (rows,) bool, for the t-way view
    rare_hits_among: TWayCount | None = None  # rare entries occupied by the ``among`` rows


def reference_cell_stats(reference: ReferencePopulation, bins: np.ndarray) -> ReferenceCellStats:
    """Support coverage, rare-cell hits and plausibility at the level of whole cells."""
    grid = reference.space.grid
    keys = grid.cell_keys(bins)
    inside = reference.mass_of_cells(keys) > 0
    occupied = np.unique(keys)
    support_hit = np.isin(reference.cell_keys, occupied).sum()
    rare_hit = np.isin(reference.rare_cell_keys, occupied).sum()
    return ReferenceCellStats(
        support_coverage=TWayCount(int(support_hit), len(reference.cell_keys)),
        rare_hits=TWayCount(int(rare_hit), len(reference.rare_cell_keys)),
        plausible=int(inside.sum()),
    )


def plausible_rows(reference: ReferencePopulation, bins: np.ndarray, t: int) -> np.ndarray:
    """Whether each row's every t-way bin combination has reference mass (t = 1: every
    value it takes occurs among the respondents)."""
    mask = reference_tway_stats(reference, bins, t).plausible_rows
    assert mask is not None
    return mask


def reference_tway_stats(
    reference: ReferencePopulation, bins: np.ndarray, t: int, among: np.ndarray | None = None
) -> ReferenceCellStats:
    """The same over t-way combinations: a row is plausible when every one of its
    t-way combinations has reference mass (``plausible_rows``). With ``among`` (a row
    mask, e.g. the rows plausible one order down), ``rare_hits_among`` counts the rare
    combinations those rows reach, in the same pass."""
    grid = reference.space.grid
    inside = np.ones(len(bins), dtype=bool)
    support_hit = support_total = rare_hit = rare_total = rare_among = 0
    for axes, mass, rare in reference.tway(t):
        keys = grid.tway_keys(bins, axes)
        inside &= mass[keys] > 0
        occupied = np.zeros(len(mass), dtype=bool)
        occupied[keys] = True
        support = mass > 0
        support_hit += int((occupied & support).sum())
        support_total += int(support.sum())
        rare_hit += int((occupied & rare).sum())
        rare_total += int(rare.sum())
        if among is not None:
            reached = np.zeros(len(mass), dtype=bool)
            reached[keys[among]] = True
            rare_among += int((reached & rare).sum())
    return ReferenceCellStats(
        support_coverage=TWayCount(support_hit, support_total),
        rare_hits=TWayCount(rare_hit, rare_total),
        plausible=int(inside.sum()),
        plausible_rows=inside,
        rare_hits_among=None if among is None else TWayCount(rare_among, rare_total),
    )
