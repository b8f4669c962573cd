"""Shared fixtures: small hand-checkable spaces and cached built-in references."""

from __future__ import annotations

import pytest

from personaevo.reference import ReferencePopulation
from personaevo.spaces import TraitSpace, load_space, space_from_data

TINY = {
    "name": "tiny",
    "context": "A toy population for hand-checked metrics.",
    "axes": [
        {"name": "age", "kind": "continuous", "low": 0, "high": 100, "bins": 4},
        {"name": "mood", "kind": "ordinal", "levels": ["low", "mid", "high"]},
        {"name": "job", "kind": "categorical", "choices": ["student", "worker", "retired"]},
    ],
    "constraints": [
        # age < 20 -> not retired; threshold 20 is not a bin edge (edges at 0, 25, 50, 75, 100)
        {
            "name": "young_not_retired",
            "when": {"age": {"lt": 20}},
            "then": {"job": {"ne": "retired"}},
        },
        {
            "name": "no_high_mood_retirees_under_60",
            "forbid": {"age": {"lt": 60}, "job": {"eq": "retired"}, "mood": {"eq": "high"}},
        },
    ],
    "consequential": [
        {"name": "old_low_mood", "where": {"age": {"ge": 80}, "mood": {"eq": "low"}}},
    ],
}


@pytest.fixture
def tiny_data() -> dict:
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def tiny() -> TraitSpace:
    return space_from_data(TINY)


@pytest.fixture(scope="session")
def customer_support() -> TraitSpace:
    return load_space("customer_support")


@pytest.fixture(scope="session")
def big_five() -> TraitSpace:
    return load_space("big_five")


@pytest.fixture(scope="session")
def bfi_reference(big_five) -> ReferencePopulation:
    return ReferencePopulation.default_for(big_five)
