"""The import list of generator programs: every name an allowed module gives is harmless.

Walks every module in ``PROGRAM_MODULES`` and every name it gives to programs, and proves
that none is a module outside the list, a clock, a source of OS randomness, or file,
process or interpreter access (by identity with the dangerous objects of the standard
library and numpy, and by the module that defines it).
"""

from __future__ import annotations

import builtins
import importlib
import types

import numpy as np
import pytest

from personaevo.program_imports import PROGRAM_MODULES, given_names, refusal
from personaevo.programs import check_contract

DANGEROUS_MODULES = (
    "_io",
    "_posixsubprocess",
    "_random",
    "_socket",
    "_thread",
    "ctypes",
    "datetime",
    "importlib",
    "io",
    "mmap",
    "multiprocessing",
    "os",
    "pathlib",
    "posix",
    "random",
    "secrets",
    "shutil",
    "signal",
    "socket",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "uuid",
)
"""Modules whose objects give files, processes, clocks, OS randomness or the interpreter."""

DANGEROUS_BUILTINS = (
    "__import__",
    "breakpoint",
    "compile",
    "eval",
    "exec",
    "globals",
    "input",
    "locals",
    "open",
    "vars",
)
NUMPY_DANGEROUS = (
    "datetime64",  # np.datetime64("now") reads the clock
    "fromfile",
    "fromregex",
    "genfromtxt",
    "load",
    "loadtxt",
    "memmap",
    "save",
    "savetxt",
    "savez",
    "savez_compressed",
)


def _dangerous_objects() -> dict[int, str]:
    found: dict[int, str] = {}
    for name in DANGEROUS_MODULES:
        module = importlib.import_module(name)
        found[id(module)] = name
        for attr in dir(module):
            value = getattr(module, attr, None)
            origin = getattr(value, "__module__", None)
            if callable(value) and isinstance(origin, str) and origin.split(".")[0] == name:
                found.setdefault(id(value), f"{name}.{attr}")  # defined there, not re-exported
    for name in DANGEROUS_BUILTINS:
        found[id(getattr(builtins, name))] = f"builtins.{name}"
    for name in NUMPY_DANGEROUS:
        found[id(getattr(np, name))] = f"numpy.{name}"
    return found


def _given() -> list[tuple[str, str]]:
    return sorted((module, name) for module in PROGRAM_MODULES for name in given_names(module))


def test_every_listed_module_imports_and_gives_names() -> None:
    for module in PROGRAM_MODULES:
        importlib.import_module(module)
        assert given_names(module), module


def _dangerous(given: list[tuple[str, str]]) -> list[str]:
    """The (module, name) pairs that give a program something it must not have."""
    dangerous = _dangerous_objects()
    bad = []
    for module, name in given:
        value = getattr(importlib.import_module(module), name)
        if isinstance(value, types.ModuleType):
            if f"{module}.{name}" not in PROGRAM_MODULES:
                bad.append(f"{module}.{name}: module {value.__name__} is not listed")
            continue
        if id(value) in dangerous:
            bad.append(f"{module}.{name} is {dangerous[id(value)]}")
            continue
        origin = getattr(value, "__module__", None) or ""
        if isinstance(origin, str) and origin.split(".")[0] in DANGEROUS_MODULES:
            bad.append(f"{module}.{name} comes from {origin}")
    return bad


def test_no_given_name_is_dangerous() -> None:
    given = _given()
    assert len(given) > 1000  # numpy, scipy.stats, scipy.special... are really walked
    bad = _dangerous(given)
    assert bad == [], "\n".join(bad)


def test_the_walk_finds_what_the_old_check_let_through() -> None:
    leaks = [
        ("typing", "sys"),
        ("statistics", "random"),
        ("numpy", "fromfile"),
        ("numpy", "datetime64"),
        ("numpy", "lib"),
        ("json", "scanner"),
        ("personaevo.evaluate", "time"),
        ("personaevo.llm.vllm_server", "subprocess"),
    ]
    assert len(_dangerous(leaks)) == len(leaks)


def test_the_names_that_escaped_before_are_refused() -> None:
    assert refusal("typing", "sys") is not None
    assert refusal("statistics", "random") is not None
    assert refusal("numpy", "fromfile") is not None
    assert refusal("numpy", "datetime64") is not None
    assert refusal("scipy", "io") is not None
    assert refusal("personaevo", "evaluate") is not None
    assert refusal("numpy.random", "rand") is not None
    assert refusal("scipy.stats", "qmc") is None
    assert refusal("numpy", "linalg") is None


@pytest.mark.parametrize(
    "statement",
    [
        "from personaevo.llm.vllm_server import os, socket, subprocess, signal",
        "from typing import sys",
        "from personaevo.evaluate import time",
    ],
)
def test_the_reported_bypasses_fail_the_check(statement: str) -> None:
    source = f"{statement}\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    assert check_contract(source)


def test_generator_kit_maps_points_to_personas(customer_support) -> None:
    from personaevo.generator_kit import feasible_personas, traits_at

    point = [0.5] * len(customer_support.axes)
    traits = traits_at(customer_support, point)
    assert set(traits) == {a.name for a in customer_support.axes}
    points = np.random.default_rng(0).random((400, len(customer_support.axes)))
    personas = feasible_personas(customer_support, points, 10, "k")
    assert len(personas) == 10 and personas[0]["id"] == "k-0"
    assert all(customer_support.is_feasible(p["traits"]) for p in personas)
