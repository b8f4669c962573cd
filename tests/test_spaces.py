"""Trait spaces: loading, validation messages, constraints, encodings, feasibility."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from personaevo.errors import FileFieldError, FileFieldsError, InputError
from personaevo.spaces import builtin_space_names, load_space


def test_three_builtin_spaces_of_different_shapes():
    names = builtin_space_names()
    assert {"customer_support", "big_five", "mental_health_support", "general_public"} <= set(names)
    kinds = {n: {a.kind for a in load_space(n).axes} for n in names}
    assert kinds["big_five"] >= {"continuous", "categorical", "ordinal"}
    assert kinds["customer_support"] == {"ordinal", "categorical"}
    assert load_space("customer_support").dim >= 10
    for name in names:
        space = load_space(name)
        assert space.consequential, name
        assert space.grid.n_feasible_cells > 0


def test_load_from_json_file(tmp_path, tiny_data):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_data))
    assert load_space(path).axis_names == ["age", "mood", "job"]


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda d: d["axes"][0].update(low=200), "axes.0", "below high"),
        (lambda d: d["axes"][1].update(levels=["a"]), "axes.1", "at least two"),
        (
            lambda d: d["constraints"][0]["when"].update(agee={"lt": 3}),
            "constraints[0].when.agee",
            "unknown axis",
        ),
        (
            lambda d: d["constraints"][0]["then"]["job"].update(ne="pilot"),
            "constraints[0].then.job.ne",
            "unknown value",
        ),
        (
            lambda d: d["constraints"][0]["when"]["age"].update(lt="old"),
            "constraints[0].when.age.lt",
            "expected a number",
        ),
        (
            lambda d: d["constraints"][1]["forbid"].update(job={"lt": "worker"}),
            "constraints[1].forbid.job.lt",
            "categorical",
        ),
        (lambda d: d["axes"][0].update(kind="bogus"), "axes.0", "bogus"),
        (lambda d: d.pop("context"), "context", "required"),
        (lambda d: d["constraints"].append({"when": {"age": {"lt": 3}}}), "constraints.2", "when"),
    ],
)
def test_malformed_space_names_file_field_and_reason(tmp_path, tiny_data, mutate, field, reason):
    mutate(tiny_data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_data))
    with pytest.raises(FileFieldsError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message
    assert any(field in f and reason in r for f, r in info.value.problems), message


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncontext: y\naxes: [\n  - a: b: c\n")
    with pytest.raises(FileFieldError) as info:
        load_space(path)
    assert "line" in info.value.field and str(path) in str(info.value)


def test_unknown_space_name():
    with pytest.raises(InputError, match="not a built-in space"):
        load_space("no_such_space")


def test_constraints_reject_what_they_should(tiny):
    ok = {"age": 30.0, "mood": "low", "job": "retired"}
    assert tiny.check_traits(ok) == []
    assert tiny.check_traits({**ok, "age": 19.9}) == ["infeasible: young_not_retired"]
    assert tiny.check_traits({**ok, "age": 20.0}) == []  # lt is strict
    assert tiny.check_traits({**ok, "mood": "high"}) == [
        "infeasible: no_high_mood_retirees_under_60"
    ]
    assert tiny.check_traits({**ok, "mood": "high", "age": 60.0}) == []
    assert tiny.check_traits({**ok, "age": 101}) == ["age: out of range: 101 not in [0.0, 100.0]"]
    assert tiny.check_traits({**ok, "job": "pilot"})[0].startswith("job: unknown value")
    assert tiny.check_traits({**ok, "extra": 1}) == ["unknown axis 'extra'"]
    assert tiny.check_traits({"age": 30.0, "mood": "low"}) == ["missing axis 'job'"]
    assert "non-finite" in tiny.check_traits({**ok, "age": float("nan")})[0]
    assert "expected a number" in tiny.check_traits({**ok, "age": True})[0]


def _brute_force_cells(space, samples_per_axis=400):
    """Feasible cells found by dense enumeration of fine points (includes thresholds)."""
    grid = space.grid
    per_axis = []
    for axis in space.axes:
        if axis.kind == "continuous":
            per_axis.append(np.linspace(axis.low + 1e-6, axis.high - 1e-6, samples_per_axis))
        else:
            per_axis.append(np.arange(axis.n_bins, dtype=float))
    V = np.array(list(itertools.product(*per_axis)))
    V = V[grid.feasible_mask(V)]
    return {tuple(b) for b in grid.bins(V)}


def test_feasible_cell_count_matches_brute_force(tiny):
    cells = _brute_force_cells(tiny)
    assert tiny.grid.n_feasible_cells == len(cells)
    # 4 age bins x 3 moods x 3 jobs = 36; the first age bin [0, 25) still holds ages 20..25 so
    # retirees stay feasible there; only (age < 60 & retired & high mood) cells disappear in
    # bins [0,25), [25,50); bin [50,75) holds ages 60..75, so it stays feasible.
    assert len(cells) == 36 - 2
    all_cells = np.array(list(itertools.product(range(4), range(3), range(3))))
    feasible = tiny.grid.cells_feasible(all_cells)
    assert {tuple(c) for c in all_cells[feasible]} == cells


def test_tway_feasible_matches_brute_force(tiny):
    cells = _brute_force_cells(tiny)
    for t in (1, 2, 3):
        for axes, mask in tiny.grid.tway_feasible(t):
            sizes = tiny.grid.n_bins[list(axes)]
            expected = {tuple(c[a] for a in axes) for c in cells}
            combos = list(itertools.product(*[range(s) for s in sizes]))
            got = {c for c in combos if mask[int(np.dot(c, np.cumprod(np.r_[1, sizes[:-1]])))]}
            assert got == expected, (t, axes)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_vectorised_feasibility_agrees_with_scalar_checks(seed):
    space = load_space("mental_health_support")
    grid = space.grid
    V = grid.from_uniform(np.random.default_rng(seed).random((40, space.dim)))
    mask = grid.feasible_mask(V)
    for row, feasible, traits in zip(V, mask, grid.to_traits(V), strict=True):
        assert space.is_feasible(traits) == feasible, traits
        if feasible:
            assert grid.cells_feasible(grid.bins(row[None]))[0]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["customer_support", "big_five", "mental_health_support"]),
    st.integers(0, 2**32 - 1),
)
def test_encoding_round_trips(name, seed):
    space = load_space(name)
    grid = space.grid
    V = grid.sample_uniform(25, np.random.default_rng(seed))
    traits = grid.to_traits(V)
    assert np.array_equal(grid.native(traits), V)
    U = grid.unit(V)
    assert U.min() >= 0 and U.max() <= 1
    back = grid.low + U * (grid.high - grid.low)
    assert np.allclose(back, V)
    B = grid.bins(V)
    assert (B >= 0).all() and (B < grid.n_bins).all()
    discrete = ~grid.continuous
    assert np.array_equal(B[:, discrete], V[:, discrete])


def test_discrete_encoding_puts_extremes_on_faces(tiny):
    V = tiny.grid.native(
        [
            {"age": 0.0, "mood": "low", "job": "student"},
            {"age": 100.0, "mood": "high", "job": "retired"},
        ]
    )
    assert np.array_equal(tiny.grid.unit(V), [[0, 0, 0], [1, 1, 1]])
    assert np.array_equal(tiny.grid.bins(V), [[0, 0, 0], [3, 2, 2]])


def test_sampling_is_feasible_and_seeded(customer_support):
    grid = customer_support.grid
    a = grid.sample_uniform(500, np.random.default_rng(3))
    b = grid.sample_uniform(500, np.random.default_rng(3))
    assert np.array_equal(a, b) and grid.feasible_mask(a).all()
    s1, s2 = grid.sobol(300, 1), grid.sobol(300, 1)
    assert np.array_equal(s1, s2) and grid.feasible_mask(s1).all()


def test_consequential_membership(tiny):
    assert tiny.in_configuration("old_low_mood", {"age": 85.0, "mood": "low", "job": "retired"})
    assert not tiny.in_configuration("old_low_mood", {"age": 79.0, "mood": "low", "job": "retired"})
