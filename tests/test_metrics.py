"""Metric values on hand-checkable point sets, and the fast vs dense implementations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from personaevo.metrics import dense, geometry, score
from personaevo.personas import Persona, personas_from_native
from personaevo.reference import ReferencePopulation
from personaevo.spaces import space_from_data

GRID2 = {
    "name": "grid2",
    "context": "Two ordinal axes.",
    "axes": [
        {"name": "a", "kind": "ordinal", "levels": [0, 1, 2, 3]},
        {"name": "b", "kind": "ordinal", "levels": [0, 1, 2, 3]},
    ],
}


def _tiny_grid_personas(space):
    """One persona per feasible cell, at a feasible point inside it."""
    grid = space.grid
    rows = []
    for cell in itertools.product(*[range(b) for b in grid.n_bins]):
        V = np.array(cell, dtype=float)[None].copy()
        for j, axis in enumerate(space.axes):
            if axis.kind == "continuous":
                width = (axis.high - axis.low) / axis.bins
                candidates = axis.low + width * (cell[j] + np.linspace(0.01, 0.99, 50))
                V = np.repeat(V, len(candidates), axis=0)
                V[:, j] = np.tile(candidates, len(V) // len(candidates))
        V = V[grid.feasible_mask(V)]
        if len(V):
            rows.append(V[0])
    return personas_from_native(space, np.array(rows))


def test_full_grid_gives_grid_coverage_one(tiny):
    personas = _tiny_grid_personas(tiny)
    report = score(personas, tiny, n_probes=2000)
    assert report.n_valid == len(personas) == tiny.grid.n_feasible_cells
    assert report.grid_coverage.fraction == 1.0
    assert report.tway_coverage["2"].fraction == 1.0
    assert report.tway_coverage["3"].fraction == 1.0
    assert report.kl_to_uniform == pytest.approx(0.0, abs=1e-12)


def test_missing_cell_lowers_grid_coverage(tiny):
    personas = _tiny_grid_personas(tiny)[1:]
    report = score(personas, tiny, n_probes=2000)
    assert report.grid_coverage.covered == tiny.grid.n_feasible_cells - 1
    assert report.grid_coverage.fraction < 1.0


@pytest.mark.parametrize("name", ["customer_support", "big_five", "mental_health_support"])
@pytest.mark.parametrize("n", [25, 200])
def test_sobol_points_reach_99_percent_coverage(name, n):
    from personaevo.spaces import load_space

    space = load_space(name)
    seed = 7
    personas = personas_from_native(space, space.grid.sobol(n, seed))
    report = score(personas, space, seed=seed, n_probes=5000, tway=(2,))
    assert report.mc_coverage >= 0.99
    assert 1.0 <= report.radius_multiplier <= 10.0


def test_tight_cluster_scores_far_below_uniform(customer_support):
    grid = customer_support.grid
    rng = np.random.default_rng(0)
    uniform = grid.sample_uniform(300, rng)
    centre = grid.sample_uniform(1, rng)
    cluster = np.repeat(centre, 300, axis=0)
    # jitter one axis so the cluster is not a single point
    cluster[:, 1] = rng.integers(0, 2, size=300)
    cluster = cluster[grid.feasible_mask(cluster)]
    u = score(personas_from_native(customer_support, uniform), customer_support, n_probes=5000)
    c = score(personas_from_native(customer_support, cluster), customer_support, n_probes=5000)
    assert c.mc_coverage < 0.2 * u.mc_coverage
    assert c.dispersion > 1.5 * u.dispersion
    assert c.tway_coverage["2"].fraction < 0.5 * u.tway_coverage["2"].fraction
    assert c.mean_pairwise_distance < 0.5 * u.mean_pairwise_distance
    assert c.pairwise_kl > 5 * u.pairwise_kl


def test_rare_hits_counted_exactly_on_planted_reference():
    space = space_from_data(GRID2)
    counts = np.full((4, 4), 100)
    planted = [(0, 3), (3, 0), (2, 2)]
    for a, b in planted:
        counts[a, b] = 5  # 15 of 1,315 respondents: 1.1% of the mass; 5 make a common type
    counts[1, 1] = 0  # outside the support
    rows = [(a, b) for a in range(4) for b in range(4) for _ in range(counts[a, b])]
    reference = ReferencePopulation(space, np.array(rows, dtype=float))
    assert len(reference.rare_cell_keys) == 3
    assert len(reference.cell_keys) == 15
    # personas: two planted rare cells (one twice), one common cell, one cell outside the support
    cells = [(0, 3), (0, 3), (2, 2), (1, 2), (1, 1)]
    personas = [Persona(id=str(i), traits={"a": a, "b": b}) for i, (a, b) in enumerate(cells)]
    report = score(personas, space, reference=reference, n_probes=1000)
    ref = report.reference
    assert ref.rare_hits.covered == 2 and ref.rare_hits.total == 3
    assert ref.support_coverage.covered == 3 and ref.support_coverage.total == 15
    # four of the five lie in the support, but two of those are the same persona
    assert ref.plausibility == pytest.approx(3 / 5)
    # with t = 2 and two axes the t-way view is the cell view
    assert ref.rare_hits_tway["2"].covered == 2
    assert ref.plausibility_tway["2"] == pytest.approx(3 / 5)


def test_rare_threshold_keeps_ties_together():
    from personaevo.reference import rare_mask

    mass = np.array([0.0, 0.01, 0.02, 0.02, 0.95])
    assert rare_mask(mass, 0.05).tolist() == [False, True, True, True, False]
    assert rare_mask(mass, 0.04).tolist() == [False, True, False, False, False]
    assert rare_mask(mass, 0.005).tolist() == [False] * 5


def test_invalid_personas_counted_with_reasons_not_clipped(tiny):
    good = {"age": 30.0, "mood": "low", "job": "worker"}
    records = [
        {"id": "ok", "traits": good},
        {"id": "unknown", "traits": {**good, "height": 3}},
        {"id": "range", "traits": {**good, "age": 130}},
        {"id": "infeasible", "traits": {**good, "age": 10.0, "job": "retired"}},
        {"id": "level", "traits": {**good, "mood": "ecstatic"}},
        {"traits": good},
    ]
    report = score(records, tiny, n_probes=500)
    assert report.n_personas == 6 and report.n_valid == 1
    assert report.validity == pytest.approx(1 / 6)
    assert report.invalid_reasons == {
        "unknown axis": 1,
        "out of range": 1,
        "infeasible: young_not_retired": 1,
        "unknown value": 1,
        "malformed": 1,
    }
    assert {e.id for e in report.invalid_examples} == {
        "unknown",
        "range",
        "infeasible",
        "level",
        None,
    }


@pytest.mark.parametrize(
    "records", [[], [{"id": "x", "traits": {"age": -1, "mood": "low", "job": "worker"}}]]
)
def test_empty_or_all_invalid_population_gives_zero_report(tiny, records):
    ref = ReferencePopulation.from_marginals(tiny, n=500)
    report = score(records, tiny, reference=ref, n_probes=500)
    assert report.validity == 0 and report.n_valid == 0
    assert report.mc_coverage == 0 and report.grid_coverage.fraction == 0
    assert report.dispersion == pytest.approx(math.sqrt(3))
    assert report.min_pairwise_distance == 0 and report.mean_pairwise_distance == 0
    assert report.tway_coverage["2"].covered == 0
    assert report.reference.support_coverage.covered == 0 and report.reference.chamfer_coverage == 0
    assert report.kl_to_uniform is None
    report.model_dump_json()  # serialisable


def test_duplicate_rate(tiny):
    p = {"age": 30.0, "mood": "low", "job": "worker"}
    records = [{"id": str(i), "traits": p} for i in range(4)] + [
        {"id": "x", "traits": {**p, "age": 31.0}}
    ]
    report = score(records, tiny, n_probes=500)
    assert report.duplicate_rate == pytest.approx(1 - 2 / 5)
    assert report.min_pairwise_distance == 0


def test_hull_volume_exact_degenerate_and_not_computed():
    square = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.5]])
    assert geometry.hull_volume(square, 6).value == pytest.approx(1.0)
    line = np.array([[0, 0], [0.5, 0.5], [1, 1]])
    flat = geometry.hull_volume(line, 6)
    assert flat.value == 0.0 and flat.method == "degenerate"
    high = geometry.hull_volume(np.random.default_rng(0).random((50, 8)), 6)
    assert high.value is None and high.method == "not computed"


def test_chamfer_coverage_is_one_for_identical_sets_and_low_for_far_sets():
    rng = np.random.default_rng(0)
    ref = rng.random((300, 3))
    d_ref, _ = geometry.mean_pairwise_distance(ref, rng)
    assert geometry.chamfer_coverage(ref, ref, d_ref) == pytest.approx(1.0)
    corner = np.zeros((300, 3))
    assert geometry.chamfer_coverage(corner, ref, d_ref) < 0.3


def test_fast_report_equals_dense_report(customer_support):
    grid = customer_support.grid
    seed, n = 3, 300
    personas = personas_from_native(
        customer_support, grid.sample_uniform(n, np.random.default_rng(1))
    )
    ref = ReferencePopulation.from_marginals(customer_support, n=2000, seed=1)
    fast = score(personas, customer_support, reference=ref, seed=seed, n_probes=3000)
    with dense.dense_geometry():
        slow = score(personas, customer_support, reference=ref, seed=seed, n_probes=3000)
    assert geometry.coverage_radius is not dense.coverage_radius  # restored
    # the exact multiplier is the bisection's answer rounded up to the 0.01 grid
    assert fast.radius_multiplier == pytest.approx(slow.radius_multiplier, abs=0.011)
    for key in ("dispersion", "min_pairwise_distance", "mean_pairwise_distance"):
        assert getattr(fast, key) == pytest.approx(getattr(slow, key), rel=1e-9), key
    assert fast.mc_coverage == pytest.approx(
        slow.mc_coverage, abs=0.01
    )  # radius differs by < 0.01 r0
    assert fast.reference.chamfer_coverage == pytest.approx(
        slow.reference.chamfer_coverage, rel=1e-9
    )
    assert fast.tway_coverage == slow.tway_coverage


def test_sampled_mean_pairwise_distance_close_to_exact():
    rng = np.random.default_rng(0)
    unit = rng.random((5000, 4))
    sampled, method = geometry.mean_pairwise_distance(unit, rng)
    assert method.startswith("sampled")
    exact, _ = dense.mean_pairwise_distance(unit, rng)
    assert sampled == pytest.approx(exact, rel=0.005)


def test_report_is_deterministic_given_seed(customer_support, tiny):
    grid = customer_support.grid
    personas = personas_from_native(
        customer_support, grid.sample_uniform(200, np.random.default_rng(5))
    )
    ref = ReferencePopulation.from_marginals(customer_support, n=3000, seed=1)
    a = score(personas, customer_support, reference=ref, seed=11, n_probes=2000).model_dump(
        exclude={"seconds"}
    )
    b = score(personas, customer_support, reference=ref, seed=11, n_probes=2000).model_dump(
        exclude={"seconds"}
    )
    assert a == b


def test_coverage_radius_is_cached(customer_support):
    grid = customer_support.grid
    geometry._radius_cache.clear()
    geometry.coverage_radius(grid, 123, 1000, 0)
    assert (customer_support.fingerprint, 123, 1000, 0) in geometry._radius_cache
    before = dict(geometry._radius_cache)
    geometry.coverage_radius(grid, 123, 1000, 0)
    assert geometry._radius_cache == before


def test_consequential_hits(tiny):
    records = [
        {"id": "1", "traits": {"age": 85.0, "mood": "low", "job": "retired"}},
        {"id": "2", "traits": {"age": 30.0, "mood": "low", "job": "worker"}},
    ]
    report = score(records, tiny, n_probes=500)
    (hit,) = report.consequential
    assert hit.name == "old_low_mood" and hit.personas == 1 and hit.hit and hit.share == 0.5


def test_flat_names_have_directions(customer_support):
    personas = personas_from_native(
        customer_support, customer_support.grid.sample_uniform(50, np.random.default_rng(0))
    )
    ref = ReferencePopulation.from_marginals(customer_support, n=2000)
    report = score(personas, customer_support, reference=ref, n_probes=500)
    for name in report.flat():
        assert report.direction(name) in ("higher", "lower")
