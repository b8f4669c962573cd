"""A straightforward dense implementation of the distance metrics.

Every neighbour question is answered from full distance matrices (computed in row
blocks so memory stays bounded), mean pairwise distance is always exact, and the
coverage multiplier is found by DeepMind's bisection with no cache. The functions are
drop-in replacements for those in :mod:`personaevo.metrics.geometry`;
:func:`dense_geometry` swaps them in, so the *same* ``score()`` report can be computed
both ways. Tests compare the two; ``experiments/bench_metrics.py`` times them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
from scipy.spatial.distance import cdist

from personaevo.grid import SpaceGrid
from personaevo.metrics import geometry

BLOCK = 1024


def nearest_distances(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.full(len(queries), np.inf)
    out = np.empty(len(queries))
    for start in range(0, len(queries), BLOCK):
        out[start : start + BLOCK] = cdist(queries[start : start + BLOCK], points).min(axis=1)
    return out


def coverage_and_dispersion(
    points: np.ndarray, probes: np.ndarray, radius: float
) -> tuple[float, float]:
    if len(points) == 0:
        return 0.0, math.inf
    dist = nearest_distances(points, probes)
    return float(np.mean(dist <= radius)), float(dist.max())


def min_pairwise_distance(unit: np.ndarray) -> float:
    n = len(unit)
    if n < 2:
        return 0.0
    best = math.inf
    for start in range(0, n, BLOCK):
        block = cdist(unit[start : start + BLOCK], unit)
        rows = np.arange(start, min(start + BLOCK, n))
        block[rows - start, rows] = np.inf
        best = min(best, float(block.min()))
    return best


def mean_pairwise_distance(unit: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    n = len(unit)
    if n < 2:
        return 0.0, "exact"
    total = sum(cdist(unit[s : s + BLOCK], unit).sum() for s in range(0, n, BLOCK))
    return float(total / (n * (n - 1))), "exact"


def coverage_radius(grid: SpaceGrid, n: int, n_probes: int, seed: int) -> tuple[float, float]:
    """Bisection on [1, 10] to tolerance 0.01 for the smallest multiplier at which ``n``
    Sobol points cover 99% of the probes (as in Concordia's qmc module)."""
    r0 = geometry.base_radius(n, grid.d)
    probes = geometry.probe_points(grid, n_probes, seed)
    dist = nearest_distances(grid.unit(grid.sobol(n, seed)), probes)

    def covered(m: float) -> bool:
        return np.mean(dist <= m * r0) >= geometry.COVERAGE_TARGET

    lo, hi = geometry.MULTIPLIER_RANGE
    if covered(lo):
        return lo * r0, lo
    if not covered(hi):
        return hi * r0, hi
    while hi - lo > geometry.MULTIPLIER_TOLERANCE:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if covered(mid) else (mid, hi)
    return hi * r0, hi


@contextlib.contextmanager
def dense_geometry() -> Iterator[None]:
    """Within the block, ``score()`` uses the dense functions above."""
    names = (
        "nearest_distances",
        "coverage_and_dispersion",
        "min_pairwise_distance",
        "mean_pairwise_distance",
        "coverage_radius",
    )
    saved = {name: getattr(geometry, name) for name in names}
    try:
        for name in names:
            setattr(geometry, name, globals()[name])
        yield
    finally:
        for name, fn in saved.items():
            setattr(geometry, name, fn)
