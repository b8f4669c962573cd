"""Distance-based metrics on unit-cube encodings (``(n, d)`` arrays in [0, 1]^d).

All neighbour searches use k-d trees (:class:`scipy.spatial.cKDTree`); nothing builds
an n-by-n or n-by-probes matrix, so 100,000 personas fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, cKDTree
from scipy.spatial.distance import cdist
from scipy.special import gammaln

from personaevo.grid import SpaceGrid

COVERAGE_TARGET = 0.99
MULTIPLIER_RANGE = (1.0, 10.0)
MULTIPLIER_TOLERANCE = 0.01
EXACT_MEAN_PAIRS_MAX_N = 4000
SAMPLED_PAIRS = 200_000

_probe_cache: dict[tuple, np.ndarray] = {}
_radius_cache: dict[tuple, tuple[float, float]] = {}


def probe_points(grid: SpaceGrid, n_probes: int, seed: int) -> np.ndarray:
    """Unit-cube encodings of ``n_probes`` points drawn uniformly from the feasible
    region (cached per space, count and seed)."""
    key = (grid.space.fingerprint, n_probes, seed)
    if key not in _probe_cache:
        rng = np.random.default_rng([seed, 0x9B0BE])
        _probe_cache[key] = grid.unit(grid.sample_uniform(n_probes, rng))
    return _probe_cache[key]


def base_radius(n: int, d: int) -> float:
    """``r0 = ((1/n) / V_d)^(1/d)``, ``V_d = pi^(d/2) / Gamma(d/2 + 1)``: the radius at
    which ``n`` balls have the unit cube's total volume."""
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    return math.exp((-math.log(n) - log_vd) / d)


def coverage_radius(grid: SpaceGrid, n: int, n_probes: int, seed: int) -> tuple[float, float]:
    """Calibrated coverage radius ``m * r0`` and the multiplier ``m`` for ``n`` personas.

    ``m`` is the smallest value on a 0.01 grid in [1, 10] at which ``n`` scrambled Sobol
    points of the feasible region cover 99% of the probes (DeepMind's bisection, solved
    exactly from one nearest-neighbour query). Cached per (space, n, probes, seed), so a
    run of many evaluations pays for it once."""
    key = (grid.space.fingerprint, n, n_probes, seed)
    if key not in _radius_cache:
        r0 = base_radius(n, grid.d)
        probes = probe_points(grid, n_probes, seed)
        sobol = grid.unit(grid.sobol(n, seed))
        dist = cKDTree(sobol).query(probes, workers=-1)[0]
        k = math.ceil(COVERAGE_TARGET * len(dist))
        needed = np.partition(dist, k - 1)[k - 1] / r0
        m = math.ceil(needed / MULTIPLIER_TOLERANCE - 1e-9) * MULTIPLIER_TOLERANCE
        m = min(max(m, MULTIPLIER_RANGE[0]), MULTIPLIER_RANGE[1])
        _radius_cache[key] = (m * r0, m)
    return _radius_cache[key]


def nearest_distances(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance from each query to its nearest point (inf when there are no points)."""
    if len(points) == 0:
        return np.full(len(queries), np.inf)
    return cKDTree(points).query(queries, workers=-1)[0]


def coverage_and_dispersion(
    points: np.ndarray, probes: np.ndarray, radius: float
) -> tuple[float, float]:
    """MC coverage (share of probes within ``radius`` of a point; higher is better) and
    dispersion (largest probe-to-nearest-point distance, an estimate of the radius of the
    largest empty ball in the feasible region; lower is better).

    Two passes: a search bounded by ``radius`` settles the covered probes cheaply, then
    only the uncovered ones need their exact nearest distance for the dispersion."""
    if len(points) == 0:
        return 0.0, math.inf
    tree = cKDTree(np.unique(points, axis=0))
    near = tree.query(probes, distance_upper_bound=radius, workers=-1)[0]
    uncovered = ~np.isfinite(near)
    if uncovered.any():
        dispersion = float(tree.query(probes[uncovered], workers=-1)[0].max())
    else:
        dispersion = float(near.max())
    return float(1.0 - uncovered.mean()), dispersion


def min_pairwise_distance(unit: np.ndarray) -> float:
    """Smallest distance between two personas (higher is better; 0 with duplicates)."""
    if len(unit) < 2:
        return 0.0
    dist = cKDTree(unit).query(unit, k=2, workers=-1)[0][:, 1]
    return float(dist.min())


def mean_pairwise_distance(unit: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    """Mean distance over all pairs (higher is better): exact up to 4,000 points, else
    the mean of 200,000 uniformly drawn distinct pairs (relative standard error ~ 0.1%)."""
    n = len(unit)
    if n < 2:
        return 0.0, "exact"
    if n <= EXACT_MEAN_PAIRS_MAX_N:
        total = 0.0
        for start in range(0, n, 1024):
            block = cdist(unit[start : start + 1024], unit)
            total += block.sum()
        return float(total / (n * (n - 1))), "exact"
    i = rng.integers(0, n, SAMPLED_PAIRS)
    j = (i + rng.integers(1, n, SAMPLED_PAIRS)) % n
    return float(np.linalg.norm(unit[i] - unit[j], axis=1).mean()), f"sampled {SAMPLED_PAIRS} pairs"


@dataclass
class HullResult:
    value: float | None
    method: str
    note: str = ""


def hull_volume(unit: np.ndarray, max_dim: int) -> HullResult:
    """Volume of the convex hull of the personas (higher is better). Exact with Qhull for
    ``d <= max_dim``; above, Qhull's cost (~n^(d/2) facets) rules it out and the result
    is explicitly "not computed". Points spanning fewer than ``d`` dimensions give 0
    with method "degenerate"."""
    d = unit.shape[1]
    if d > max_dim:
        return HullResult(None, "not computed", f"d={d} > hull_max_dim={max_dim}")
    points = np.unique(unit, axis=0)
    if len(points) == 0:
        return HullResult(0.0, "degenerate", "no valid personas")
    if d == 1:
        return HullResult(float(points.max() - points.min()), "exact")
    rank = np.linalg.matrix_rank(points - points[0]) if len(points) > 1 else 0
    if rank < d:
        return HullResult(0.0, "degenerate", f"points span {rank} of {d} dimensions")
    return HullResult(float(ConvexHull(points).volume), "qhull")


def chamfer_coverage(unit: np.ndarray, reference: np.ndarray, d_ref: float) -> float:
    """PPol's chamfer coverage against reference points (higher is better):
    ``err = mean_h min_p |h - p| + mean_p min_h |p - h|``,
    ``score = max(0, 1 - min(1, err / (2 d_ref)))``, ``d_ref`` the mean pairwise
    distance among reference points."""
    if len(unit) == 0 or len(reference) < 2 or d_ref == 0:
        return 0.0
    err = nearest_distances(unit, reference).mean() + nearest_distances(reference, unit).mean()
    return float(max(0.0, 1.0 - min(1.0, err / (2 * d_ref))))
