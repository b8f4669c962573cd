"""A small real run directory for the export and report tests, made once per session.

It goes through the real loop (:class:`~personaevo.evolution.loop.Evolution`), the real
run-directory writer (:class:`~personaevo.evolution.run.RunDirectory`), the real sandbox
and the real scoring; only Ray is left out: the loop's ``evaluate`` callable runs the
batch on a local :class:`~personaevo.sandbox.Sandbox` (the loop documents that interface),
which keeps the tests fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from personaevo.assess import Assessor
from personaevo.evaluate import generator_space, score_run, seed_generator_paths
from personaevo.evolution import Evolution, EvolveConfig, RunDirectory
from personaevo.programs import GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Job, Sandbox, SandboxLimits
from personaevo.spaces import resolve_space

SEEDS = ("density_matched", "sobol", "stratified_extremes", "uniform")


def small_config(
    path: Path, space: str = "customer_support", generations: int = 2, **overrides
) -> EvolveConfig:
    """2 islands of 4 of the :data:`SEEDS` programs, n=40, into ``path``; ``overrides``
    replace any field."""
    seeds = [str(p) for p in seed_generator_paths() if p.stem in SEEDS]
    fields = {
        "space": space,
        "generations": generations,
        "population": 4,
        "islands": 2,
        "migration_interval": 1,
        "migrants": 1,
        "workers": 1,
        "n": 40,
        "probes": 500,
        "seed": 1,
        "seeds": seeds,
        "out": str(path),
    }
    return EvolveConfig(**{**fields, **overrides})


def build_run(
    path: Path,
    space: str = "customer_support",
    generations: int = 2,
    *,
    config: EvolveConfig | None = None,
    assessor: Assessor | None = None,
    sandbox: Sandbox | None = None,
) -> Path:
    """Evolve ``config`` (default :func:`small_config`) into ``path``, positions measured
    by ``assessor`` (default: declared), on ``sandbox`` (default: a 2-worker one)."""
    config = config or small_config(path, space, generations)
    space_ = resolve_space(config.space)
    reference = ReferencePopulation.default_for(space_, seed=config.seed)
    objectives = config.resolved_objectives(reference is not None)
    view = generator_space(space_, reference, seed=config.seed)
    rundir = RunDirectory(path)
    limits = SandboxLimits(wall_seconds=30, cpu_seconds=30)
    owned = sandbox is None
    box = Sandbox(workers=2, limits=limits) if owned else sandbox
    try:

        def evaluate(tasks: Iterable[tuple[str, str, str]]) -> dict:
            tasks = list(tasks)
            jobs = [
                Job(
                    program=GeneratorProgram(source=src, name=name, ast_hash=key, checked=False),
                    space=view,
                    n=config.n,
                    seed=config.seed,
                )
                for key, src, name in tasks
            ]
            results = box.map(jobs)
            return {
                key: score_run(result, space_, reference, config.seed, config.probes, assessor)
                for (key, _, _), result in zip(tasks, results, strict=True)
            }

        evo = Evolution.from_config(config, objectives, evaluate, on_evaluated=rundir.record)
        rundir.create(config)
        evo.seed_population([(p.name, p.source) for p in map(load_program, config.seeds)])
        rundir.checkpoint(evo)
        while evo.generation < config.generations:
            evo.step()
            rundir.checkpoint(evo)
    finally:
        if owned:
            box.close()
    return path


def shared_run(tmp_path_factory) -> Path:
    """The session's small run (built by the first test module that asks for it)."""
    path = tmp_path_factory.getbasetemp() / "small-run"
    if not (path / "checkpoint.json").exists():
        build_run(path)
    return path
