"""Evaluate generator programs: run each in the sandbox, then score what it wrote.

This is the unit of work of evolution and of ``personaevo score``. A program sees the
trait space as a :class:`GeneratorSpace`: the space itself plus, when scoring against a
reference population, a sample of that population (``space.reference_sample``: unit-cube
points and the density's bandwidth) so that density-matching programs can use it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from personaevo.assess import AssessmentSummary, Assessor, check_assessable, make_assessor
from personaevo.llm.base import LLM, Message, ProgramLLM, SamplingParams, Usage
from personaevo.metrics import ScoreReport, score
from personaevo.personas import Malformed, Missing, check_personas
from personaevo.programs import ContractError, GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import (
    DEFAULT_WALL_SECONDS,
    FailureKind,
    Job,
    RunResult,
    Sandbox,
    SandboxLimits,
)
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
    whenever the program returned personas (even if some are invalid), and always scores
    exactly ``n`` personas: those refused or not returned count as invalid. A program
    that returned more than ``n`` fails as ``wrong_count`` and has no report."""

    program: str
    program_hash: str
    n: int  # personas asked for: the size of the scored population
    n_returned: int | None = None  # personas the program returned (None: no list)
    seed: int
    ok: bool
    failure: str | None = None
    message: str = ""
    traceback: str = ""
    run_seconds: float = 0.0
    report: ScoreReport | None = None
    assessment: AssessmentSummary | None = None  # how positions were measured (not explicit)
    llm_usage: Usage | None = None  # language-model calls of the program and the assessor


# Seed generators that write persona text without a language model (or fall back to
# writing it without one): the default seeds when positions are measured from text.
TEXT_SEED_GENERATORS = ("llm_two_stage", "phrase_bank", "phrase_sobol")
# Text writers whose placement repeats another seed's (uniform, sobol): left out of the
# defaults when the declared traits are what counts.
TEXT_ONLY_SEED_GENERATORS = ("phrase_bank", "phrase_sobol")


def seed_generator_paths(assess: str | None = None) -> list[Path]:
    """The built-in seed generator programs (``generators/`` in the source tree): all of
    them, or the default seeds for an assessment: with ``embedding`` or ``questionnaire``
    those that write text, with ``explicit`` all but the text-only ones."""
    folder = resources.files("personaevo.seed_generators")
    paths = sorted(
        Path(str(p)) for p in folder.iterdir() if p.name.endswith(".py") and p.name != "__init__.py"
    )
    if assess in ("embedding", "questionnaire"):
        paths = [p for p in paths if p.stem in TEXT_SEED_GENERATORS]
    elif assess == "explicit":
        paths = [p for p in paths if p.stem not in TEXT_ONLY_SEED_GENERATORS]
    return paths


class MeteredLLM(LLM):
    """Forwards to ``inner`` and keeps its own :class:`Usage`: one program's share of a
    client that several programs use at once."""

    def __init__(self, inner: LLM) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        return self.inner.chat(conversations, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self.inner.complete(prompts, params)


def score_run(
    result: RunResult,
    space: TraitSpace,
    reference: ReferencePopulation | None,
    seed: int,
    n_probes: int,
    assessor: Assessor | None = None,
) -> Evaluation:
    """Turn a sandbox result into an :class:`Evaluation`, scoring its personas at the
    positions ``assessor`` measures (default: the declared traits)."""
    evaluation = Evaluation(
        program=result.program_name,
        program_hash=result.program_hash,
        n=result.n_requested,
        n_returned=result.n_returned,
        seed=seed,
        ok=result.ok,
        failure=None if result.failure is None else str(result.failure),
        message=result.message,
        traceback=result.traceback,
        run_seconds=result.wall_seconds,
    )
    if result.personas or result.failure == FailureKind.INVALID_PERSONAS:
        records: list = result.personas
        if assessor is not None and assessor.method != "explicit":
            measured = assessor.measure(records, space, seed=seed)
            records, evaluation.assessment = measured.records, measured.summary
        records = [*records, *_unscorable(result)]
        start = time.perf_counter()
        checked = check_personas(records, space)
        validate_seconds = time.perf_counter() - start
        evaluation.report = score(checked, space, reference=reference, seed=seed, n_probes=n_probes)
        evaluation.report.seconds["validate"] = round(validate_seconds, 4)
        if result.ok and not checked.valid:
            evaluation.ok = False
            evaluation.failure = str(FailureKind.INVALID_PERSONAS)
            reasons = evaluation.report.invalid_reasons
            evaluation.message = f"no valid persona among {checked.n_total}: {reasons}"
    return evaluation


def _unscorable(result: RunResult) -> list[Malformed | Missing]:
    """Placeholders that make a run's scored population exactly the ``n`` personas asked
    for: one per persona the sandbox refused as malformed, one per persona not returned."""
    returned = result.n_returned if result.n_returned is not None else len(result.personas)
    malformed = [Malformed("refused by the sandbox (see the run's problems)")] * result.n_invalid
    short = max(0, result.n_requested - returned)
    detail = f"returned {returned} personas for n={result.n_requested}"
    return [*malformed, *[Missing(detail)] * short]


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
    llm: LLM | None = None,
    assess: str | Assessor = "explicit",
    sampling: SamplingParams | None = None,
) -> list[Evaluation]:
    """Run and score programs (paths, sources or loaded programs), in order.

    A program that cannot be loaded (unreadable, a syntax error, the static contract
    check) is reported with that failure kind without running; the others still run.
    Runs go through ``sandbox`` (or a temporary one with ``workers`` workers). With
    ``llm``, each program gets it as ``llm`` (a :class:`ProgramLLM` with ``sampling``, else
    the client's ``default_params``, as its defaults, through the sandbox's proxy) and
    each evaluation records the calls it cost, its program's and its assessment's.
    ``assess`` names how positions are measured (``explicit``, ``embedding``,
    ``questionnaire``: needs ``llm``) or is an :class:`Assessor`. ``limits`` default to
    the time policy of every run (:meth:`SandboxLimits.for_personas`: 60 s wall clock, a
    CPU budget of 20 ms per persona asked for).

    Every program is scored on exactly ``n`` personas: missing ones count as invalid, and
    a program that returns more than ``n`` fails as ``wrong_count`` with no report."""
    if isinstance(assess, str):
        check_assessable(space, assess)
        assessor = make_assessor(assess, llm=llm)
    else:
        assessor = assess
    loaded = [_load(p, n, seed) for p in programs]
    runnable = [p for p in loaded if isinstance(p, GeneratorProgram)]
    view = generator_space(space, reference, seed=seed)
    metered = [MeteredLLM(llm) if llm is not None else None for _ in runnable]
    jobs = [
        Job(
            program=p,
            space=view,
            n=n,
            seed=seed,
            limits=limits,
            llm=ProgramLLM(m, sampling or llm.default_params) if m is not None else None,
        )
        for p, m in zip(runnable, metered, strict=True)
    ]
    limits = limits or SandboxLimits.for_personas(n, DEFAULT_WALL_SECONDS)
    results: list[RunResult] = []
    if jobs and sandbox is None:
        with Sandbox(workers=workers, limits=limits) as own:
            results = own.map(jobs)
    elif jobs:
        results = sandbox.map(jobs)
    scored = []
    for result, program_llm in zip(results, metered, strict=True):
        before = llm.usage_snapshot() if llm is not None else None
        evaluation = score_run(result, space, reference, seed, n_probes, assessor)
        if llm is not None and program_llm is not None:
            spent = llm.usage_snapshot() - before  # the assessment's calls
            evaluation.llm_usage = program_llm.usage_snapshot() + spent
        scored.append(evaluation)
    ran = iter(scored)
    return [next(ran) if isinstance(p, GeneratorProgram) else p for p in loaded]


def _load(
    program: GeneratorProgram | str | Path, n: int, seed: int
) -> GeneratorProgram | Evaluation:
    """The loaded program, or the failed :class:`Evaluation` of one that cannot be loaded
    (failure ``unreadable``, ``syntax_error`` or ``contract_violation``: never run)."""
    if isinstance(program, GeneratorProgram):
        return program
    try:
        return load_program(program)
    except ContractError as err:
        return unloadable_evaluation(err, n, seed)


def unloadable_evaluation(err: ContractError, n: int, seed: int) -> Evaluation:
    """The record of a program that could not be loaded: its own failure kind, every
    problem in the message, no run and no report."""
    problems = "; ".join(str(p) for p in err.problems[:20])
    more = f" (and {len(err.problems) - 20} more)" if len(err.problems) > 20 else ""
    return Evaluation(
        program=err.name,
        program_hash="",
        n=n,
        seed=seed,
        ok=False,
        failure=str(FailureKind(err.kind)),
        message=f"{err.kind.replace('_', ' ')}: {problems}{more}",
    )
