"""The seed generators, run in the real sandbox and scored."""

from __future__ import annotations

import numpy as np
import pytest

from personaevo.evaluate import evaluate_programs, generator_space, seed_generator_paths
from personaevo.programs import check_contract
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits

SEEDS = [
    "density_matched",
    "llm_two_stage",
    "pairwise",
    "phrase_bank",
    "phrase_sobol",
    "sobol",
    "stratified_extremes",
    "uniform",
]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, limits=SandboxLimits(wall_seconds=60, cpu_seconds=60)) as box:
        yield box


@pytest.fixture(scope="module")
def support_reference(customer_support):
    return ReferencePopulation.from_marginals(customer_support, n=20_000, seed=0)


def test_seed_generators_ship_and_meet_the_contract():
    paths = seed_generator_paths()
    assert [p.stem for p in paths] == SEEDS
    for path in paths:
        assert check_contract(path.read_text()) == [], path


@pytest.mark.parametrize(
    "space_name", ["customer_support", "big_five", "mental_health_support", "general_public"]
)
def test_every_seed_generator_writes_valid_personas(space_name, sandbox):
    from personaevo.spaces import load_space

    space = load_space(space_name)
    evaluations = evaluate_programs(
        seed_generator_paths(), space, n=120, sandbox=sandbox, n_probes=2000
    )
    for e in evaluations:
        assert e.ok, (e.program, e.failure, e.message, e.traceback)
        assert e.report.n_valid == 120 and e.report.validity == 1.0, e.program


def test_seed_generators_are_reproducible(customer_support, sandbox):
    a = evaluate_programs(
        seed_generator_paths(), customer_support, n=60, seed=4, sandbox=sandbox, n_probes=1000
    )
    b = evaluate_programs(
        seed_generator_paths(), customer_support, n=60, seed=4, sandbox=sandbox, n_probes=1000
    )
    for x, y in zip(a, b, strict=True):
        assert x.report.model_dump(exclude={"seconds"}) == y.report.model_dump(exclude={"seconds"})


def test_pairwise_covers_every_feasible_pair(customer_support, sandbox):
    (e,) = evaluate_programs(
        [p for p in seed_generator_paths() if p.stem == "pairwise"],
        customer_support,
        n=400,
        sandbox=sandbox,
        n_probes=1000,
    )
    assert e.report.tway_coverage["2"].fraction == 1.0


def test_density_matching_trades_coverage_for_plausibility(
    customer_support, support_reference, sandbox
):
    by_name = {
        e.program: e.report
        for e in evaluate_programs(
            seed_generator_paths(),
            customer_support,
            n=300,
            reference=support_reference,
            sandbox=sandbox,
            n_probes=3000,
        )
    }
    matched, sobol, extreme = (
        by_name["density_matched"],
        by_name["sobol"],
        by_name["stratified_extremes"],
    )
    assert matched.reference.plausibility_tway["3"] > sobol.reference.plausibility_tway["3"]
    assert matched.reference.chamfer_coverage > sobol.reference.chamfer_coverage
    assert sobol.mc_coverage > matched.mc_coverage
    assert extreme.mean_pairwise_distance > sobol.mean_pairwise_distance


def test_programs_see_a_reference_sample(customer_support, support_reference):
    view = generator_space(customer_support, support_reference, max_points=500)
    assert view.reference_sample is not None and len(view.reference_sample.unit) == 500
    assert view.axis_names == customer_support.axis_names
    unit = np.array(view.reference_sample.unit)
    assert unit.min() >= 0 and unit.max() <= 1


class _NothingFeasible:
    """A program's view of a space in which no point is feasible; counts the checks."""

    def __init__(self, view) -> None:
        self._view = view
        self.checks = 0

    def __getattr__(self, name):
        return getattr(self._view, name)

    def is_feasible(self, traits) -> bool:
        self.checks += 1
        return False


@pytest.mark.parametrize("seed_name", SEEDS)
def test_every_seed_gives_up_after_200_draws_per_persona(seed_name, customer_support):
    """A mutant whose every point is rejected must fail fast, not draw until the sandbox's
    CPU budget stops it (the Sobol seeds once drew up to 2**21 points for any n)."""
    import importlib.util

    path = next(p for p in seed_generator_paths() if p.stem == seed_name)
    spec = importlib.util.spec_from_file_location(f"_seed_{seed_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the project's own seed, trusted: no sandbox needed
    n = 20
    space = _NothingFeasible(generator_space(customer_support))
    personas = module.generate(space, n, np.random.default_rng(0))
    assert personas == []
    # the last doubling batch may overshoot the 200 * n cap by less than the cap itself
    assert 0 < space.checks < 2 * 200 * n + 64, space.checks
