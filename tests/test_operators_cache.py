"""The operators' per-source analysis cache and fast AST copier change no child: the
cached path gives the same results (sources, failures, details, random draws) as the
plain reference path (:class:`personaevo.operators.analysis.reference_mode`)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import numpy as np
import pytest

from personaevo.operators import CROSSOVERS, MUTATIONS, VariationResult, analysis, crossover, mutate
from personaevo.operators.analysis import Parsed, clear_cache, fast_copy, reference_mode
from personaevo.operators.scope import function_sites

GENERATORS = Path(__file__).resolve().parents[1] / "generators"
SEEDS = [
    p.read_text(encoding="utf-8")
    for p in sorted(GENERATORS.glob("*.py"))
    if not p.name.startswith("_")
]


def _dumped(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=True)


@pytest.fixture(scope="module")
def programs() -> list[str]:
    """The seed generators plus second-generation children (made in reference mode)."""
    rng = np.random.default_rng(5)
    extra: list[str] = []
    with reference_mode():
        for k, source in enumerate(SEEDS):
            pair = crossover(source, SEEDS[(3 * k + 1) % len(SEEDS)], rng)
            results = [mutate(source, rng), *pair]
            extra += [r.source for r in results if r.source is not None]
    return SEEDS + extra[:8]


def _state(rng: np.random.Generator) -> str:
    return repr(rng.bit_generator.state)


def _outcomes(programs: list[str]) -> list[tuple[str, list[VariationResult], str]]:
    """Every mutation on every program (2 seeds) and both crossovers on 2 pairings per
    program, each result with the generator state it left behind."""
    out = []
    for name, op in MUTATIONS.items():
        for i, source in enumerate(programs):
            for seed in range(2):
                rng = np.random.default_rng([i, seed])
                out.append((name, [op(source, rng)], _state(rng)))
    for name, op in CROSSOVERS.items():
        for i, a in enumerate(programs):
            for j in ((i + 1) % len(programs), (5 * i + 3) % len(programs)):
                rng = np.random.default_rng([i, j])
                out.append((name, list(op(a, programs[j], rng)), _state(rng)))
    return out


def test_cached_operators_match_the_reference_path(programs: list[str]) -> None:
    with reference_mode():
        reference = _outcomes(programs)
    clear_cache()
    cold = _outcomes(programs)  # fills the cache
    warm = _outcomes(programs)  # served from it
    assert len(reference) == len(programs) * (2 * len(MUTATIONS) + 2 * len(CROSSOVERS))
    ok = sum(r.ok for _, results, _ in reference for r in results)
    assert ok > 150  # the comparison covers real children, not only failures
    for got in (cold, warm):
        for (name, want, want_state), (_, have, have_state) in zip(reference, got, strict=True):
            assert [r.model_dump() for r in have] == [r.model_dump() for r in want], name
            assert have_state == want_state, name


def test_reference_mode_really_bypasses_the_cache(programs: list[str]) -> None:
    clear_cache()
    with reference_mode():
        Parsed(programs[0]).sites()
        assert Parsed(programs[0]).source is None
    assert not analysis._CACHE
    Parsed(programs[0]).sites()
    assert programs[0] in analysis._CACHE


def test_fast_copy_equals_deepcopy_and_is_independent() -> None:
    tree = ast.parse(SEEDS[0])
    copied = fast_copy(tree)
    assert _dumped(copied) == _dumped(copy.deepcopy(tree)) == _dumped(tree)
    originals = {id(n) for n in ast.walk(tree) if not isinstance(n, ast.expr_context)}
    assert not any(
        id(n) in originals for n in ast.walk(copied) if not isinstance(n, ast.expr_context)
    )
    copied.body.clear()
    assert tree.body
    stmts = fast_copy(tree.body[:3])
    assert [_dumped(s) for s in stmts] == [_dumped(s) for s in tree.body[:3]]


@pytest.mark.parametrize("ends", [False, True])
def test_cached_sites_point_into_the_new_tree(programs: list[str], ends: bool) -> None:
    source = programs[-1]
    clear_cache()
    Parsed(source).sites(ends=ends)  # computed and stored
    parsed = Parsed(source)
    mapped = parsed.sites(ends=ends)
    direct = function_sites(parsed.tree, ends=ends)
    assert len(mapped) == len(direct) > 10
    for m, d in zip(mapped, direct, strict=True):
        assert m.body is d.body and m.func is d.func and m.index == d.index
        assert (m.bound_before, m.outer, m.locals, m.loop_guards) == (
            d.bound_before,
            d.outer,
            d.locals,
            d.loop_guards,
        )
        assert (m.in_loop, m.depth, m.loads, m.visible) == (d.in_loop, d.depth, d.loads, d.visible)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "CACHE_SIZE", 3)
    clear_cache()
    sources = [f"def generate(space, n, rng, llm=None):\n    return [{k}]\n" for k in range(5)]
    for source in sources:
        Parsed(source).derived("x", lambda p: 1)
    assert list(analysis._CACHE) == sources[-3:]


def test_shape_key_partitions_statements_like_the_blanked_dump(programs: list[str]) -> None:
    from personaevo.operators.crossover import _shape, _shape_size

    by_dump: dict[str, set[object]] = {}
    by_key: dict[object, set[str]] = {}
    for source in programs:
        tree = ast.parse(source)
        memo: dict[int, tuple[object, int]] = {}  # by id: one live tree per memo
        for stmt in (n for n in ast.walk(tree) if isinstance(n, ast.stmt)):
            dumped, (key, size) = _shape(stmt), _shape_size(stmt, memo)
            assert size == sum(1 for _ in ast.walk(stmt))
            by_dump.setdefault(dumped, set()).add(key)
            by_key.setdefault(key, set()).add(dumped)
    assert len(by_dump) > 100
    assert all(len(keys) == 1 for keys in by_dump.values())
    assert all(len(dumps) == 1 for dumps in by_key.values())


def test_located_nodes_are_found_again_in_a_new_parse(programs: list[str]) -> None:
    from personaevo.operators.numeric import numeric_sites

    source = programs[0]
    clear_cache()
    first = Parsed(source).located("n", lambda p: numeric_sites(p.tree))
    again = Parsed(source)
    mapped = again.located("n", lambda p: pytest.fail("not served from the cache"))
    direct = numeric_sites(again.tree)
    assert len(first) == len(mapped) == len(direct) > 0
    assert all(m[0] is d[0] and m[1] == d[1] for m, d in zip(mapped, direct, strict=True))
