"""A program is scored on exactly the n personas it was asked for.

More than n is a failure of its own kind (``wrong_count``), never scored; fewer counts
the missing ones as invalid; plausibility is a share of the n asked for, and repeats of
one plausible persona do not raise it. So the optimizer can only win by doing what the
objectives mean."""

from __future__ import annotations

import numpy as np
import pytest

from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.evolution.config import DEFAULT_OBJECTIVES_WITH_REFERENCE
from personaevo.evolution.loop import WORST, objective_values
from personaevo.metrics import score
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits

# Uniform personas, `factor` times as many as asked for: more personas reach more support
# cells and rare combinations, so if extra personas were scored this program would
# dominate the seeds (it did before the count rule: support coverage 0.786 against sobol's
# 0.375 at n = 50 on customer_support).
OVERSIZED = """
def generate(space, n, rng, llm=None):
    personas = []
    while len(personas) < FACTOR * n:
        traits = {}
        for axis in space.axes:
            if axis.kind == "continuous":
                traits[axis.name] = float(rng.uniform(axis.low, axis.high))
            else:
                traits[axis.name] = axis.values[int(rng.integers(len(axis.values)))]
        if space.is_feasible(traits):
            personas.append({"id": len(personas), "traits": traits})
    return personas
"""


def uniform_program(factor: float) -> str:
    return OVERSIZED.replace("FACTOR", repr(factor))


@pytest.fixture(scope="module")
def reference(customer_support) -> ReferencePopulation:
    return ReferencePopulation.default_for(customer_support, seed=0)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, limits=SandboxLimits.for_personas(50, 60.0)) as box:
        yield box


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def test_five_times_n_personas_cannot_dominate_the_seeds(customer_support, reference, sandbox):
    seeds = seed_generator_paths("explicit")
    programs = [*seeds, uniform_program(5), uniform_program(1)]
    evaluations = evaluate_programs(
        programs,
        customer_support,
        n=50,
        seed=0,
        reference=reference,
        sandbox=sandbox,
        n_probes=1000,
    )
    objectives = list(DEFAULT_OBJECTIVES_WITH_REFERENCE)
    *seed_evals, oversized, honest = evaluations
    assert oversized.failure == "wrong_count" and not oversized.ok
    assert oversized.n_returned == 250 and oversized.report is None
    assert "returned 250 personas for n=50" in oversized.message
    assert objective_values(oversized, objectives) == (WORST,) * len(objectives)
    seed_points = [objective_values(e, objectives) for e in seed_evals if e.ok]
    assert len(seed_points) >= 5
    assert not any(_dominates(objective_values(oversized, objectives), p) for p in seed_points)
    # the same program asked for exactly n is scored as usual: the rule, not the program,
    # is what keeps the oversized one out
    assert honest.ok and honest.n_returned == 50 and honest.report.n_personas == 50
    assert objective_values(honest, objectives) != (WORST,) * len(objectives)


def test_missing_personas_count_as_invalid(customer_support, reference, sandbox):
    half, full = evaluate_programs(
        [uniform_program(0.5), uniform_program(1)],
        customer_support,
        n=40,
        seed=3,
        reference=reference,
        sandbox=sandbox,
        n_probes=1000,
    )
    assert half.ok and half.n_returned == 20
    report = half.report
    assert report.n_personas == 40 and report.n_valid == 20 and report.validity == 0.5
    assert report.invalid_reasons == {"missing": 20}
    assert report.invalid_examples[0].reasons == ["missing: returned 20 personas for n=40"]
    # the coverage radius is calibrated for the 40 asked for, so the short set covers less
    assert report.mc_coverage < full.report.mc_coverage
    assert report.reference.plausibility <= 0.5


def test_personas_refused_by_the_sandbox_count_against_validity(tiny, sandbox):
    source = """
def generate(space, n, rng, llm=None):
    worker = {"age": 30.0, "mood": "mid", "job": "worker"}
    good = [{"id": i, "traits": dict(worker)} for i in range(n - 2)]
    return good + [{"traits": {}}, "not a persona"]
"""
    (evaluation,) = evaluate_programs([source], tiny, n=10, sandbox=sandbox, n_probes=200)
    assert evaluation.ok and evaluation.n_returned == 10
    assert evaluation.report.n_personas == 10 and evaluation.report.n_valid == 8
    assert evaluation.report.invalid_reasons == {"malformed": 2}


def _persona(i: int, age: float, mood: str = "mid", job: str = "worker") -> dict:
    return {"id": i, "traits": {"age": age, "mood": mood, "job": job}}


def test_plausibility_is_a_share_of_all_personas_and_ignores_repeats(tiny):
    # a planted reference: everyone is a mid-mood worker aged 30 to 40
    rows = [{"age": 30.0 + k % 10, "mood": "mid", "job": "worker"} for k in range(200)]
    reference = ReferencePopulation(tiny, tiny.grid.native(rows))
    plausible = [_persona(i, 30.0 + i) for i in range(5)]
    assert score(plausible, tiny, reference=reference).reference.plausibility == 1.0
    # five valid plausible personas and five invalid ones: half of the set is plausible
    invalid = [
        {"id": 10 + i, "traits": {"age": 999.0, "mood": "mid", "job": "worker"}} for i in range(5)
    ]
    report = score(plausible + invalid, tiny, reference=reference)
    assert report.validity == 0.5 and report.reference.plausibility == 0.5
    assert report.reference.plausibility_tway["2"] == 0.5
    # ten copies of one plausible persona: one distinct plausible persona of ten
    copies = [_persona(i, 31.0) for i in range(10)]
    assert score(copies, tiny, reference=reference).reference.plausibility == pytest.approx(0.1)


def test_rare_hits_objective_is_a_share_of_the_rare_combinations(customer_support, reference):
    rng = np.random.default_rng(0)
    rows = reference.native[rng.choice(len(reference.native), 50, replace=False)]
    traits = customer_support.grid.to_traits(rows)
    personas = [{"id": i, "traits": t} for i, t in enumerate(traits)]
    report = score(personas, customer_support, reference=reference, n_probes=500)
    flat = report.flat()
    count = report.reference.rare_hits_tway["3"]
    assert flat["reference.rare_hits_tway.3"] == pytest.approx(count.covered / count.total)
    assert 0.0 <= flat["reference.rare_hits_tway.3"] <= 1.0


def test_complete_set_only_names_are_report_metrics(customer_support, reference):
    from personaevo.metrics import ScoreReport

    personas = [
        {"id": i, "traits": t}
        for i, t in enumerate(customer_support.grid.to_traits(reference.native[:20]))
    ]
    flat = score(personas, customer_support, reference=reference, n_probes=200).flat()
    assert ScoreReport.COMPLETE_SET_ONLY <= flat.keys()


def test_min_pairwise_distance_counts_only_for_complete_sets(tiny, sandbox):
    corners = """
def generate(space, n, rng, llm=None):
    far = [{"id": 0, "traits": {"age": 0.0, "mood": "low", "job": "student"}},
           {"id": 1, "traits": {"age": 100.0, "mood": "high", "job": "retired"}}]
    return far if SHORT else far + [
        {"id": 2 + i, "traits": {"age": 10.0 * i, "mood": "mid", "job": "worker"}}
        for i in range(n - 2)
    ]
"""
    short, complete = evaluate_programs(
        [corners.replace("SHORT", "True"), corners.replace("SHORT", "False")],
        tiny,
        n=8,
        sandbox=sandbox,
        n_probes=200,
    )
    assert short.ok and short.report.n_valid == 2 and complete.report.n_valid == 8
    assert short.report.min_pairwise_distance > complete.report.min_pairwise_distance
    objectives = ["min_pairwise_distance", "validity"]
    assert objective_values(short, objectives)[0] == WORST
    assert objective_values(complete, objectives)[0] == complete.report.min_pairwise_distance


def test_score_uses_the_cpu_budget_per_persona_and_names_the_limit(tmp_path):
    """``score`` has evolve's time policy: 20 ms of CPU per persona (at least 1 s), so a
    busy loop asked for 10 personas stops after about a second, not after ``--timeout``;
    an oversized program is reported as ``wrong_count`` with its count."""
    import json
    import subprocess
    import sys
    import time

    busy = tmp_path / "busy.py"
    busy.write_text("def generate(space, n, rng, llm=None):\n    while True:\n        n += 1\n")
    oversized = tmp_path / "oversized.py"
    oversized.write_text(uniform_program(3))
    out = tmp_path / "evals.json"
    start = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "personaevo.cli", "score", str(busy), str(oversized)),
            *("--space", "big_five", "--n", "10", "--timeout", "50", "--probes", "200"),
            *("--workers", "1", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - start < 40
    evaluations = {e["program"]: e for e in json.loads(out.read_text())["evaluations"]}
    assert evaluations["busy"]["failure"] == "timeout"
    assert "CPU-time limit of 1s exceeded" in evaluations["busy"]["message"]
    assert evaluations["oversized"]["failure"] == "wrong_count"
    assert evaluations["oversized"]["n_returned"] == 30
    assert "wrong_count" in result.stdout and "returned 30 personas for n=10" in result.stdout


def test_export_pool_refuses_oversized_runs_and_records_their_count(customer_support, sandbox):
    from personaevo.evaluate import generator_space
    from personaevo.export.pool import sample_pool
    from personaevo.programs import load_program

    programs = [load_program(uniform_program(2)), load_program(uniform_program(1))]
    view = generator_space(customer_support, None)
    pool = sample_pool(
        programs, view, customer_support, size=60, chunk=30, sandbox=sandbox, rounds=1
    )
    oversized, honest = pool.yields
    assert oversized.pooled == 0 and oversized.failures == {"wrong_count": 1}
    assert oversized.returned == 60 and "returned 60 personas for n=30" in oversized.messages[0]
    assert honest.pooled == 30 and not honest.failures
