"""Evaluate generator programs: run each in the sandbox, then score what it wrote.

This is the unit of work of evolution and of ``personaevo score``. A program sees the
trait space as a :class:`GeneratorSpace`: the space itself plus, when scoring against a
reference population, a sample of that population (``space.reference_sample``: unit-cube
points and the density's bandwidth) so that density-matching programs can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from personaevo.metrics import ScoreReport, score
from personaevo.personas import check_personas
from personaevo.programs import GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import FailureKind, Job, RunResult, Sandbox, SandboxLimits
from personaevo.spaces import TraitSpace


class ReferenceSample(BaseModel):
    """A seeded sample of a reference population, as generator programs see it."""

    source: str
    unit: list[list[float]]  # unit-cube encodings of respondents
    bandwidth: float  # the reference density's kernel bandwidth (unit-cube units)


class GeneratorSpace(TraitSpace):
    """What a program receives as ``space``: the trait space and, optionally, a
    sample of the reference population."""

    reference_sample: ReferenceSample | None = None


def generator_space(
    space: TraitSpace,
    reference: ReferencePopulation | None = None,
    max_points: int = 2000,
    seed: int = 0,
) -> GeneratorSpace:
    """The view of ``space`` given to programs (with a reference sample when given)."""
    sample = None
    if reference is not None:
        unit = reference.unit
        if len(unit) > max_points:
            rng = np.random.default_rng([seed, 0x5A3])
            unit = unit[np.sort(rng.choice(len(unit), max_points, replace=False))]
        sample = ReferenceSample(
            source=reference.summary.source,
            unit=unit.round(6).tolist(),
            bandwidth=reference.bandwidth,
        )
    data = space.model_dump(by_alias=True, exclude_none=True)
    return GeneratorSpace.model_validate({**data, "reference_sample": sample})


class Evaluation(BaseModel):
    """One program's run and score. ``failure`` is the sandbox's failure kind, or
    ``invalid_personas`` when it ran but wrote no valid persona; ``report`` is present
    whenever the program returned personas (even if some are invalid)."""

    program: str
    program_hash: str
    n: int
    seed: int
    ok: bool
    failure: str | None = None
    message: str = ""
    traceback: str = ""
    run_seconds: float = 0.0
    report: ScoreReport | None = None


def seed_generator_paths() -> list[Path]:
    """The built-in seed generator programs (``generators/`` in the source tree)."""
    folder = resources.files("personaevo.seed_generators")
    return sorted(
        Path(str(p)) for p in folder.iterdir() if p.name.endswith(".py") and p.name != "__init__.py"
    )


def score_run(
    result: RunResult,
    space: TraitSpace,
    reference: ReferencePopulation | None,
    seed: int,
    n_probes: int,
) -> Evaluation:
    """Turn a sandbox result into an :class:`Evaluation` (scoring its personas)."""
    evaluation = Evaluation(
        program=result.program_name,
        program_hash=result.program_hash,
        n=result.n_requested,
        seed=seed,
        ok=result.ok,
        failure=None if result.failure is None else str(result.failure),
        message=result.message,
        traceback=result.traceback,
        run_seconds=result.wall_seconds,
    )
    if result.personas or result.failure == FailureKind.INVALID_PERSONAS:
        checked = check_personas(result.personas, space)
        evaluation.report = score(checked, space, reference=reference, seed=seed, n_probes=n_probes)
        if result.ok and not checked.valid:
            evaluation.ok = False
            evaluation.failure = str(FailureKind.INVALID_PERSONAS)
            reasons = evaluation.report.invalid_reasons
            evaluation.message = f"no valid persona among {checked.n_total}: {reasons}"
    return evaluation


def evaluate_programs(
    programs: Sequence[GeneratorProgram | str | Path],
    space: TraitSpace,
    n: int = 100,
    seed: int = 0,
    reference: ReferencePopulation | None = None,
    sandbox: Sandbox | None = None,
    workers: int = 1,
    limits: SandboxLimits | None = None,
    n_probes: int = 10_000,
) -> list[Evaluation]:
    """Run and score programs (paths, sources or loaded programs), in order.

    A program that fails the static contract check is reported as such without running.
    Runs go through ``sandbox`` (or a temporary one with ``workers`` workers)."""
    loaded = [p if isinstance(p, GeneratorProgram) else load_program(p) for p in programs]
    view = generator_space(space, reference, seed=seed)
    jobs = [Job(program=p, space=view, n=n, seed=seed, limits=limits) for p in loaded]
    if sandbox is None:
        with Sandbox(workers=workers, limits=limits or SandboxLimits()) as own:
            results = own.map(jobs)
    else:
        results = sandbox.map(jobs)
    return [score_run(r, space, reference, seed, n_probes) for r in results]
