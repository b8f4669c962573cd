"""Novelty: a persona that copies a reference respondent is counted and earns nothing."""

from __future__ import annotations

import numpy as np
import pytest

from personaevo.metrics import score
from personaevo.metrics.novelty import ANONYMITY_K, COPY_GAP_FRACTION, copy_detector
from personaevo.reference import ReferencePopulation
from personaevo.spaces import space_from_data


@pytest.fixture(scope="module")
def bfi(big_five) -> ReferencePopulation:
    return ReferencePopulation.default_for(big_five, seed=0)


def _personas(space, native: np.ndarray) -> list[dict]:
    return [{"id": i, "traits": t} for i, t in enumerate(space.grid.to_traits(native))]


def test_threshold_is_a_tenth_of_the_median_respondent_gap(bfi):
    detector = copy_detector(bfi)
    assert detector.median_gap > 0
    assert detector.threshold == pytest.approx(COPY_GAP_FRACTION * detector.median_gap)
    assert copy_detector(bfi) is detector  # built once per reference


def test_verbatim_respondents_are_copies_and_earn_nothing(big_five, bfi):
    rng = np.random.default_rng(0)
    rows = bfi.native[rng.choice(len(bfi.native), 60, replace=False)]
    report = score(_personas(big_five, rows), big_five, reference=bfi, n_probes=500)
    assert report.validity == 1.0 and report.n_valid == 60
    ref = report.reference
    assert ref.copies == 60 and ref.copy_share == 1.0
    assert ref.plausibility == 0.0 and ref.support_coverage.covered == 0
    assert report.mc_coverage == 0.0 and report.flat()["reference.rare_hits_tway.3"] == 0.0


def test_kernel_draws_and_uniform_personas_are_novel(big_five, bfi):
    """A density-matching draw (respondent plus kernel noise) is not a copy, and it keeps
    its plausibility; the same rows without the noise are copies."""
    rng = np.random.default_rng(1)
    rows = bfi.unit[rng.choice(len(bfi.unit), 200, replace=False)]
    noisy = np.clip(rows + rng.normal(0.0, bfi.bandwidth, rows.shape), 0, 1)
    detector = copy_detector(bfi)
    assert not detector.is_copy(noisy).any()
    assert detector.is_copy(rows).all()
    assert not detector.is_copy(rng.uniform(size=rows.shape)).any()
    # a copy nudged by less than the threshold is still a copy
    nudge = rng.normal(size=rows.shape)
    nudge *= 0.5 * detector.threshold / np.linalg.norm(nudge, axis=1, keepdims=True)
    assert detector.is_copy(rows + nudge).all()


def test_half_copies_halve_what_the_set_earns(big_five, bfi):
    rng = np.random.default_rng(2)
    rows = bfi.native[rng.choice(len(bfi.native), 40, replace=False)]
    grid = big_five.grid
    noisy_unit = np.clip(grid.unit(rows) + rng.normal(0, bfi.bandwidth, rows.shape), 0, 1)
    novel = grid.from_uniform(noisy_unit)
    mixed = np.vstack([novel[:20], rows[20:]])
    report = score(_personas(big_five, mixed), big_five, reference=bfi, n_probes=500)
    alone = score(_personas(big_five, novel[:20]), big_five, reference=bfi, n_probes=500)
    assert report.reference.copies == 20
    # the 20 novel ones are what is scored, out of 40 asked for
    assert report.reference.support_coverage == alone.reference.support_coverage
    assert report.reference.plausibility == pytest.approx(alone.reference.plausibility / 2)


def test_positions_shared_by_k_respondents_are_common_types_not_copies():
    space = space_from_data(
        {
            "name": "two",
            "context": "Two ordinal axes.",
            "axes": [
                {"name": "a", "kind": "ordinal", "levels": [0, 1, 2]},
                {"name": "b", "kind": "ordinal", "levels": [0, 1, 2]},
            ],
        }
    )
    rows = [(0, 0)] * ANONYMITY_K + [(1, 1)] * (ANONYMITY_K - 1) + [(2, 2)]
    reference = ReferencePopulation(space, np.array(rows, dtype=float))
    personas = [{"id": i, "traits": {"a": a, "b": b}} for i, (a, b) in enumerate(rows[::1])]
    report = score(personas[:1] + personas[-2:], space, reference=reference, n_probes=200)
    # (0, 0) is held by k respondents: a type; (1, 1) by k - 1 and (2, 2) by one: copies
    assert report.reference.copies == 2


def test_plausible_rare_hits_need_every_pair_in_the_support(big_five, bfi):
    rng = np.random.default_rng(3)
    unit = rng.uniform(size=(300, big_five.dim))
    report = score(
        _personas(big_five, big_five.grid.from_uniform(unit)),
        big_five,
        reference=bfi,
        n_probes=500,
    )
    flat = report.flat()
    plausible_rare = report.reference.plausible_rare_hits_tway["3"]
    rare = report.reference.rare_hits_tway["3"]
    assert plausible_rare.total == rare.total
    # uniform draws reach many rare triples through implausible pairs: those do not count
    assert 0 < plausible_rare.covered < rare.covered
    assert flat["reference.plausible_rare_hits_tway.3"] == pytest.approx(
        plausible_rare.covered / plausible_rare.total
    )
    assert report.DIRECTIONS["plausible_rare_hits"] == "higher"
    assert report.direction("reference.copy_share") == "lower"
