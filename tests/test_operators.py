"""Variation operators: validity rates on the seed programs, honest failure reports,
determinism, children that still run, crossover semantics, and the sampler table."""

from __future__ import annotations

import ast
import signal
import warnings
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

from personaevo import load_space
from personaevo.operators import (
    CROSSOVERS,
    DEFAULT_CROSSOVERS,
    DEFAULT_MUTATIONS,
    MUTATIONS,
    SAMPLER_FAMILIES,
    AstMutation,
    BlockCrossover,
    Crossover,
    DuplicateStatement,
    HelperCrossover,
    InsertStatement,
    Mutation,
    MutationContext,
    NoSiteError,
    PerturbNumbers,
    SamplerFamily,
    SamplerForm,
    SwapSampler,
    VariationResult,
    crossover,
    make_child,
    module_deps,
    mutate,
    perturb_value,
)
from personaevo.operators.sampling import build_form, find_sampler_sites, replace_node
from personaevo.programs import ast_hash, check_contract

GENERATORS = Path(__file__).resolve().parents[1] / "generators"
SEEDS: dict[str, str] = {
    p.stem: p.read_text(encoding="utf-8")
    for p in sorted(GENERATORS.glob("*.py"))
    if not p.name.startswith("_")
}
PAIRS = [(a, b) for a in SEEDS for b in SEEDS if a != b]
PER_SEED = 16  # applications of each mutation per seed program (80 per operator)

# Floors: measured on the seed programs (see experiments/operator_rates.py) minus a
# margin. swap_sampler has nothing to swap in sobol.py (no sampling call of a declared
# family), delete_statement nothing it may delete in sobol.py and uniform.py.
OK_FLOOR = {
    "perturb_numbers": 0.95,
    "swap_sampler": 0.75,
    "insert_statement": 0.95,
    "delete_statement": 0.55,
    "duplicate_statement": 0.95,
}
RUN_FLOOR = 0.8
FAILURES = {"syntax", "contract", "no-op", "no-site", "invalid-parent", "error"}


# --------------------------------------------------------------------------- helpers


class _TimeoutError(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _TimeoutError


def run_child(source: str, space: Any, n: int = 20, timeout: float = 2.0) -> tuple[bool, str]:
    """Exec a child in-process (tests only) and call ``generate``; whether it returned a
    list without raising within ``timeout`` seconds, and why not."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        namespace: dict[str, Any] = {"__name__": "child"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(source, "<child>", "exec"), namespace)
            out = namespace["generate"](space, n, np.random.default_rng(0))
        return isinstance(out, list), type(out).__name__
    except _TimeoutError:
        return False, "timeout"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def helper_def(source: str, name: str) -> str:
    """The AST dump of a top-level function, for comparing helpers across programs."""
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == name:
            return ast.dump(stmt)
    raise AssertionError(f"no function {name!r}")


def assert_honest(result: VariationResult, parents: list[str]) -> None:
    """An ok child is a new, contract-valid program; a failure carries no source."""
    assert result.parents == parents
    if result.ok:
        assert result.source is not None and result.failure is None
        assert check_contract(result.source) == []
        assert ast_hash(result.source) not in parents
        assert result.child_hash == ast_hash(result.source)
    else:
        assert result.source is None and result.failure in FAILURES


@pytest.fixture(scope="module")
def space():
    return load_space("customer_support")


@pytest.fixture(scope="module")
def mutation_runs() -> dict[str, list[tuple[str, VariationResult]]]:
    """Every mutation applied PER_SEED times to each seed program (seeded)."""
    runs: dict[str, list[tuple[str, VariationResult]]] = {}
    for name, op in MUTATIONS.items():
        runs[name] = [
            (seed, op(source, np.random.default_rng([i, 7])))
            for i in range(PER_SEED)
            for seed, source in SEEDS.items()
        ]
    return runs


@pytest.fixture(scope="module")
def crossover_runs() -> dict[str, list[tuple[tuple[str, str], VariationResult]]]:
    """Every crossover applied once to each ordered pair of distinct seed programs."""
    runs: dict[str, list[tuple[tuple[str, str], VariationResult]]] = {}
    for name, op in CROSSOVERS.items():
        runs[name] = []
        for i, (a, b) in enumerate(PAIRS):
            first, second = op(SEEDS[a], SEEDS[b], np.random.default_rng([i, 11]))
            runs[name] += [((a, b), first), ((b, a), second)]
    return runs


# --------------------------------------------------------------------------- mutations


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_valid_rate(name: str, mutation_runs) -> None:
    results = [r for _, r in mutation_runs[name]]
    counts = Counter(r.failure or "ok" for r in results)
    assert counts["ok"] / len(results) >= OK_FLOOR[name], counts
    # the AST operators never produce broken code, and never crash
    assert counts["syntax"] == counts["contract"] == counts["error"] == 0, counts


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_reports_honestly(name: str, mutation_runs) -> None:
    hashes = {seed: ast_hash(source) for seed, source in SEEDS.items()}
    for i, (seed, result) in enumerate(mutation_runs[name]):
        assert result.operator == name and result.parents == [hashes[seed]]
        assert result.ok == (result.source is not None) == (result.failure is None)
        if i % 3 == 0:  # re-check a third independently: parse, contract, changed
            assert_honest(result, [hashes[seed]])


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_children_run(name: str, mutation_runs, space) -> None:
    # a sample of ok children: the first 2 per seed program
    sample: list[str] = []
    taken: Counter[str] = Counter()
    for seed, result in mutation_runs[name]:
        if result.ok and taken[seed] < 2:
            taken[seed] += 1
            assert result.source is not None
            sample.append(result.source)
    outcomes = [run_child(source, space) for source in sample]
    share = sum(ok for ok, _ in outcomes) / len(outcomes)
    assert share >= RUN_FLOOR, [why for ok, why in outcomes if not ok]


@pytest.mark.parametrize("name", [*MUTATIONS, "mutate"])
def test_mutation_is_deterministic(name: str) -> None:
    op = mutate if name == "mutate" else MUTATIONS[name]
    for source in SEEDS.values():
        first = op(source, np.random.default_rng(123))
        again = op(source, np.random.default_rng(123))
        assert first == again


def test_operators_apply_to_their_own_children() -> None:
    # evolution applies operators to evolved programs: chains of mutations and
    # crossovers must keep producing contract-valid children and never crash
    rng = np.random.default_rng(3)
    counts: Counter[str] = Counter()
    programs = list(SEEDS.values())
    for source in programs:
        for _ in range(8):
            if rng.random() < 0.25:
                result, _ = crossover(source, programs[int(rng.integers(0, 5))], rng)
            else:
                result = mutate(source, rng)
            counts[result.failure or "ok"] += 1
            if result.ok:
                assert result.source is not None
                source = result.source
    assert counts["syntax"] == counts["contract"] == counts["error"] == 0, counts
    assert counts["ok"] >= 0.8 * sum(counts.values()), counts


def test_seeded_runs_differ_across_seeds() -> None:
    source = SEEDS["stratified_extremes"]
    children = {mutate(source, np.random.default_rng(s)).source for s in range(20)}
    assert len(children) > 10


def test_perturb_value_is_scale_aware() -> None:
    rng = np.random.default_rng(0)
    for p in (0.001, 0.05, 0.5, 0.8, 0.999):
        for _ in range(200):
            q = perturb_value(p, rng)
            assert 0.0 < q < 1.0 and q != p
    for v in (2, 3, 50, 200):  # 2 can only go up
        moved = [perturb_value(v, rng) for _ in range(200)]
        assert all(m >= 2 and m != v and isinstance(m, int) for m in moved)
        assert max(abs(m - v) for m in moved) <= max(1, round(0.25 * v))
    assert {perturb_value(20, rng, exponent=True) for _ in range(50)} == {19, 21}
    big = [perturb_value(1500.0, rng) for _ in range(200)]
    assert all(b > 0 for b in big) and 300 < np.median(big) < 7500


def test_perturb_leaves_indices_and_identities_alone() -> None:
    program = "def generate(space, n, rng, llm=None):\n    x = [0, 1][0]\n    return [x][-1:1]\n"
    result = PerturbNumbers()(program, np.random.default_rng(0))
    assert result.failure == "no-site" and result.source is None


def test_swap_sampler_without_sampling_call_is_no_site() -> None:
    result = SwapSampler()(SEEDS["sobol"], np.random.default_rng(0))
    assert not result.ok and result.failure == "no-site"


def test_delete_never_removes_a_return(mutation_runs) -> None:
    def returns(source: str) -> int:
        return sum(isinstance(n, ast.Return) for n in ast.walk(ast.parse(source)))

    for seed, result in mutation_runs["delete_statement"]:
        if result.ok:
            assert result.source is not None
            assert returns(result.source) == returns(SEEDS[seed])


def test_duplicate_copies_a_statement_in_place(mutation_runs) -> None:
    for seed, result in mutation_runs["duplicate_statement"][:25]:
        assert result.ok and result.source is not None
        parent = ast.parse(SEEDS[seed])
        child = ast.parse(result.source)
        n_parent = sum(isinstance(n, ast.stmt) for n in ast.walk(parent))
        n_child = sum(isinstance(n, ast.stmt) for n in ast.walk(child))
        assert n_child > n_parent
        # somewhere a statement is immediately followed by an identical one
        assert any(
            ast.dump(body[i]) == ast.dump(body[i + 1])
            for node in ast.walk(child)
            for field in ("body", "orelse", "finalbody")
            for body in [getattr(node, field, None)]
            if isinstance(body, list)
            for i in range(len(body) - 1)
        )


def test_insert_uses_copies_and_the_library(mutation_runs) -> None:
    details = [r.detail for _, r in mutation_runs["insert_statement"] if r.ok]
    assert any("copy of line" in d for d in details)
    assert any("library" in d for d in details)


def test_insert_respects_scope() -> None:
    # `traits` is bound only inside the loop: a library statement using it may only go there
    program = (
        "def generate(space, n, rng, llm=None):\n"
        "    personas = []\n"
        "    for i in range(n):\n"
        "        traits = {a.name: a.values[0] for a in space.axes}\n"
        "        personas.append({'id': i, 'traits': traits})\n"
        "    return personas\n"
    )
    for seed in range(30):
        result = InsertStatement(copy_share=0.0)(program, np.random.default_rng(seed))
        assert result.ok and result.source is not None
        fn = ast.parse(result.source).body[0]
        assert isinstance(fn, ast.FunctionDef)
        top_level = [ast.dump(s) for s in fn.body]
        # the loop and the return stay; nothing that reads `traits` lands outside the loop
        assert len(top_level) in (3, 4)
        for stmt in fn.body:
            if not isinstance(stmt, ast.For):
                names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
                assert "traits" not in names


# --------------------------------------------------------------------------- failure reports


class _Nothing(AstMutation):
    name = "nothing"

    def edit(self, tree, rng, context):
        return "changed nothing"


class _ImportOs(AstMutation):
    name = "import_os"

    def edit(self, tree, rng, context):
        tree.body.insert(0, ast.parse("import os").body[0])
        return "added import os"


class _Raises(AstMutation):
    name = "raises"

    def edit(self, tree, rng, context):
        raise KeyError("boom")


class _NoSite(AstMutation):
    name = "no_site"

    def edit(self, tree, rng, context):
        raise NoSiteError("nothing here")


@pytest.mark.parametrize(
    ("op", "failure"),
    [
        (_Nothing(), "no-op"),
        (_ImportOs(), "contract"),
        (_Raises(), "error"),
        (_NoSite(), "no-site"),
    ],
)
def test_failures_are_reported_not_raised(op: AstMutation, failure: str) -> None:
    source = SEEDS["uniform"]
    result = op(source, np.random.default_rng(0))
    assert not result.ok and result.failure == failure and result.source is None
    assert result.operator == op.name and result.parents == [ast_hash(source)]


def test_contract_failure_keeps_rejected_source_for_inspection() -> None:
    result = _ImportOs()(SEEDS["uniform"], np.random.default_rng(0))
    assert result.rejected_source is not None and "import os" in result.rejected_source
    assert "os" in result.detail


def test_make_child_classifies() -> None:
    parent = SEEDS["uniform"]
    parents = [ast_hash(parent)]
    assert make_child(parent + "\n# a comment\n", "x", parents).failure == "no-op"
    assert make_child("def generate(:\n", "x", parents).failure == "syntax"
    assert make_child("import os\n" + parent, "x", parents).failure == "contract"
    assert make_child(parent.replace("200", "300"), "x", parents).ok


def test_invalid_parent() -> None:
    result = PerturbNumbers()("def generate(:\n", np.random.default_rng(0))
    assert result.failure == "invalid-parent" and not result.ok
    left, right = HelperCrossover()("def generate(:\n", SEEDS["uniform"], np.random.default_rng(0))
    assert left.failure == right.failure == "invalid-parent"


def test_result_model_rejects_inconsistent_states() -> None:
    with pytest.raises(ValueError):
        VariationResult(source=None, operator="x", parents=[], ok=True)
    with pytest.raises(ValueError):
        VariationResult(source="x", operator="x", parents=[], ok=False, failure="no-op")


# --------------------------------------------------------------------------- the open interface


class _FakeLLMMutation:
    """What an LLM operator looks like: a name and the Mutation call signature."""

    name = "llm_rewrite"

    def __init__(self) -> None:
        self.seen: list[MutationContext | None] = []

    def __call__(self, source, rng, context=None):
        self.seen.append(context)
        child = source.replace("200 * n", f"{int(rng.integers(100, 199))} * n")
        return make_child(child, self.name, [ast_hash(source)], "rewrote the budget")


def test_custom_operator_plugs_in() -> None:
    fake = _FakeLLMMutation()
    assert isinstance(fake, Mutation) and isinstance(PerturbNumbers(), Mutation)
    assert isinstance(HelperCrossover(), Crossover)
    context = MutationContext(report={"coverage": 0.4}, failure="timeout")
    table = [(fake, 1.0), (PerturbNumbers(), 0.0)]
    result = mutate(SEEDS["uniform"], np.random.default_rng(0), table, context)
    assert result.ok and result.operator == "llm_rewrite"
    assert fake.seen == [context]


def test_mutate_retries_after_no_site() -> None:
    table = [(SwapSampler(), 1000.0), (DuplicateStatement(), 1.0)]
    for seed in range(5):
        result = mutate(SEEDS["sobol"], np.random.default_rng(seed), table)
        assert result.ok and result.operator == "duplicate_statement"
        plain = mutate(SEEDS["sobol"], np.random.default_rng(seed), table, retry_no_site=False)
        assert plain.operator in {"swap_sampler", "duplicate_statement"}


class _Fixed:
    """A free stand-in operator that always reports the same failure."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, source, rng, context=None):
        return VariationResult(operator=self.name, parents=[], ok=False, failure="no-op")


def test_mutate_follows_rates() -> None:
    table = [(_Fixed("a"), 3.0), (_Fixed("b"), 1.0), (_Fixed("never"), 0.0)]
    used = Counter(
        mutate(SEEDS["uniform"], np.random.default_rng(s), table).operator for s in range(1000)
    )
    assert 0.70 < used["a"] / 1000 < 0.80 and used["never"] == 0
    with pytest.raises(ValueError):
        mutate(SEEDS["uniform"], np.random.default_rng(0), [(PerturbNumbers(), -1.0)])
    with pytest.raises(ValueError):
        mutate(SEEDS["uniform"], np.random.default_rng(0), [(PerturbNumbers(), 0.0)])


def test_default_tables() -> None:
    assert {op.name for op, _ in DEFAULT_MUTATIONS} == set(MUTATIONS)
    assert {op.name for op, _ in DEFAULT_CROSSOVERS} == set(CROSSOVERS)
    assert all(rate > 0 for _, rate in DEFAULT_MUTATIONS + DEFAULT_CROSSOVERS)


# --------------------------------------------------------------------------- crossover


@pytest.mark.parametrize("name", list(CROSSOVERS))
def test_crossover_children_are_valid_and_run(name: str, crossover_runs, space) -> None:
    results = crossover_runs[name]
    for (recipient, donor), result in results:
        assert_honest(result, [ast_hash(SEEDS[recipient]), ast_hash(SEEDS[donor])])
    counts = Counter(r.failure or "ok" for _, r in results)
    assert counts["ok"] / len(results) >= 0.9, counts
    ran = [run_child(r.source, space)[0] for _, r in results[::4] if r.source is not None]
    assert sum(ran) / len(ran) >= RUN_FLOOR


def test_crossover_is_deterministic() -> None:
    a, b = SEEDS["uniform"], SEEDS["stratified_extremes"]
    for op in CROSSOVERS.values():
        assert op(a, b, np.random.default_rng(5)) == op(a, b, np.random.default_rng(5))
    assert crossover(a, b, np.random.default_rng(9)) == crossover(a, b, np.random.default_rng(9))


def _variant_of_stratified() -> str:
    """stratified_extremes with a different middle_value and a different share."""
    source = SEEDS["stratified_extremes"]
    variant = source.replace(
        "return float(rng.uniform(axis.low, axis.high))",
        "return float(rng.triangular(axis.low, axis.low, axis.high))",
    ).replace("EXTREME_SHARE = 0.8", "EXTREME_SHARE = 0.6")
    assert variant.count("triangular") == 1 and "0.6" in variant
    return variant


def test_helper_swap_exchanges_same_named_helpers(space) -> None:
    a, b = SEEDS["stratified_extremes"], _variant_of_stratified()
    first, second = HelperCrossover()(a, b, np.random.default_rng(0))
    assert first.ok and second.ok, (first.detail, second.detail)
    assert first.source is not None and second.source is not None
    # each child now has the other parent's middle_value, and keeps its own constants
    assert helper_def(first.source, "middle_value") == helper_def(b, "middle_value")
    assert helper_def(second.source, "middle_value") == helper_def(a, "middle_value")
    assert "EXTREME_SHARE = 0.8" in first.source and "EXTREME_SHARE = 0.6" in second.source
    assert run_child(first.source, space)[0] and run_child(second.source, space)[0]


def test_helper_swap_of_the_only_difference_is_a_no_op() -> None:
    a = SEEDS["stratified_extremes"]
    b = _variant_of_stratified().replace("EXTREME_SHARE = 0.6", "EXTREME_SHARE = 0.8")
    first, second = HelperCrossover()(a, b, np.random.default_rng(0))
    assert first.failure == second.failure == "no-op"


def test_helper_import_brings_its_module_dependencies(space) -> None:
    # uniform lacks extreme_value, which reads the module constant END_WIDTH
    deps = module_deps(
        ast.parse(SEEDS["stratified_extremes"]), {"extreme_value"}, ast.parse(SEEDS["uniform"])
    )
    kinds = [(type(d).__name__, getattr(d, "name", None)) for d in deps]
    assert kinds == [("Assign", None), ("FunctionDef", "extreme_value")]
    assert ast.unparse(deps[0]) == "END_WIDTH = 0.1"
    # through the operator: an imported or rewired helper always arrives with END_WIDTH
    seen = set()
    for seed in range(25):
        child, _ = HelperCrossover()(
            SEEDS["uniform"], SEEDS["stratified_extremes"], np.random.default_rng(seed)
        )
        assert child.ok and child.source is not None
        seen.add(child.detail.split(" the other parent's ")[-1].split(" ")[0])
        if "extreme_value" in child.detail:
            assert "END_WIDTH = 0.1" in child.source
            assert run_child(child.source, space)[0]
    assert {"extreme_value", "middle_value"} <= seen


def test_helper_rewire_points_callers_at_the_incoming_helper(space) -> None:
    # uniform.draw_value(axis, rng) and stratified.middle_value(axis, rng) share a signature
    for seed in range(40):
        child, _ = HelperCrossover()(
            SEEDS["uniform"], SEEDS["stratified_extremes"], np.random.default_rng(seed)
        )
        if child.detail.startswith("replaced draw_value"):
            assert child.source is not None
            assert "draw_value" not in child.source
            assert "middle_value(axis, rng)" in child.source
            assert run_child(child.source, space)[0]
            return
    pytest.fail("no rewire in 40 tries")


def test_block_crossover_can_exchange_whole_loops(space) -> None:
    a, b = SEEDS["uniform"], SEEDS["stratified_extremes"]
    for seed in range(60):
        first, second = BlockCrossover()(a, b, np.random.default_rng(seed))
        assert first.ok and second.ok
        assert first.source is not None and second.source is not None
        if "EXTREME_SHARE" in first.source and "extreme_value(" in first.source:
            # uniform now runs stratified's sampling, helpers and constants included
            assert check_contract(first.source) == []
            assert run_child(first.source, space)[0]
            return
    pytest.fail("no loop exchange in 60 tries")


# --------------------------------------------------------------------------- sampler table


def _program_with(expr: str) -> str:
    return (
        "def generate(space, n, rng, llm=None):\n"
        "    lo, hi, k, mu, sd = 1.0, 4.0, 5, 0.0, 1.0\n"
        f"    x = {expr}\n"
        "    return [{'id': 0, 'traits': {'x': float(x)}}]\n"
    )


_FILL = {"A": "lo", "B": "hi", "K": "k", "M": "mu", "S": "sd", "R": "rng"}


def _instantiate(family: SamplerFamily, form: SamplerForm) -> str:
    tree = ast.parse(form.template, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in family.placeholders:
            node.id = _FILL.get(node.id, node.id)
    text = ast.unparse(tree).replace("**KW", "size=None")
    for name in family.fresh:
        text = text.replace(name, "0.5")
    return text


@pytest.mark.parametrize(
    ("family", "form"),
    [(fam, form) for fam in SAMPLER_FAMILIES for form in fam.forms],
    ids=lambda x: x.name,
)
def test_every_sampler_form_is_recognised_and_builds_every_other(family, form) -> None:
    program = _program_with(_instantiate(family, form))
    assert check_contract(program) == []
    sites = find_sampler_sites(ast.parse(program), [family])
    assert [family.forms[s.form].name for s in sites] == [form.name]
    for target, other in enumerate(family.forms):
        if other is form:
            continue
        tree = ast.parse(program)
        (site,) = find_sampler_sites(tree, [family])
        new = build_form(site, target, np.random.default_rng(target))
        assert new is not None
        replace_node(tree, site.node, new)
        child = ast.unparse(tree)
        assert check_contract(child) == []
        (again,) = find_sampler_sites(ast.parse(child), [family])
        assert family.forms[again.form].name == other.name, child
        ok, why = run_child(child, None, n=1)
        assert ok, (why, child)
    result = SwapSampler(families=[family])(program, np.random.default_rng(0))
    assert result.ok and f"{family.name} {form.name} -> " in result.detail


def test_sampler_family_table_is_checked() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        SamplerFamily(name="bad", forms=(SamplerForm("x", "R.uniform(A, TYPO)"),), shared=("A",))
    with pytest.raises(ValueError, match="lacks"):
        SamplerFamily(name="bad", forms=(SamplerForm("x", "R.random()"),), shared=("A",))


def test_swap_does_not_duplicate_a_random_draw() -> None:
    # the bounds are random draws: a form using a bound twice would draw it twice, so the
    # range site cannot be swapped; only the inner rng.random() calls (unit family) can
    program = _program_with("rng.uniform(rng.random(), 2.0 + rng.random())")
    for seed in range(10):
        result = SwapSampler()(program, np.random.default_rng(seed))
        assert result.ok and result.source is not None
        assert "rng.uniform(" in result.source and ": unit random -> " in result.detail
    alone = SwapSampler(families=[SAMPLER_FAMILIES[0]])(program, np.random.default_rng(0))
    assert alone.failure == "no-site"
