"""Running, checkpointing and resuming an evolution in a run directory.

The run directory's files are described in :mod:`personaevo.evolution.store`. A resumed
run is first checked and repaired by :mod:`personaevo.evolution.recovery`, before Ray
starts, and may change only what :mod:`personaevo.evolution.resume` allows.
``evaluations.jsonl`` and the journal are also the evaluation cache: a resumed run
re-reads them, so no program is evaluated twice, including those of a generation
interrupted by ``kill -9``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from personaevo.errors import InputError
from personaevo.evaluate import seed_generator_paths
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.evaluator import RayEvaluator
from personaevo.evolution.loop import Evolution, Individual
from personaevo.evolution.recovery import Recovered, recover_run
from personaevo.evolution.resume import RunComplete, resume_changes
from personaevo.evolution.store import RunDirectory, llm_report, write_config
from personaevo.llm.base import LLM, Usage
from personaevo.operators.llm import LLMMutation
from personaevo.programs import ContractError, GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.spaces import resolve_space
from personaevo.tables import counts_text, short_metric_name

__all__ = ["Progress", "RunDirectory", "advance", "llm_report", "restore", "run_evolution"]


def restore(evo: Evolution, recovered: Recovered) -> None:
    """Put a recovered run's state into ``evo`` (built with the run's configuration)."""
    evo.cache = dict(recovered.cache)
    evo.pending = dict(recovered.pending)
    state = recovered.checkpoint
    if state is None:
        return
    programs = recovered.path / "programs"
    k = len(evo.objectives)

    def individual(member) -> Individual:
        source = (programs / f"{member.key}.py").read_text(encoding="utf-8")
        return Individual(source, member.name, member.operator, member.parents, k, member.key)

    evo.generation = state.generation
    evo.islands = [[individual(m) for m in island] for island in state.islands]
    evo.seeds = [individual(m) for m in state.seeds]
    front = [individual(m) for m in state.front]
    evo.rng.bit_generator.state = state.rng
    evo.variation = Counter({(op, outcome): c for op, outcome, c in state.variation})
    evo.failures = Counter(state.failures)
    evo.evaluations = state.evaluations
    # Mutation use is known only to the driver: from the checkpoint; the evaluations'
    # too (a checkpoint written before it kept that: summed over the cache).
    usage = state.llm_usage
    evo.llm_usage["mutation"] = Usage.model_validate(usage.get("mutation", {}))
    if "evaluation" in usage:
        evo.llm_usage["evaluation"] = Usage.model_validate(usage["evaluation"])
    else:
        evo.llm_usage["evaluation"] = sum(
            (e.llm_usage for e in evo.cache.values() if e.llm_usage is not None), Usage()
        )
    evo.logbook.extend(state.logbook)  # rows as saved (record() would split dicts)
    evo.set_fitness([*evo.seeds, *front, *(i for island in evo.islands for i in island)])
    evo.front.update(front)


def _seed_programs(config: EvolveConfig, recovered: Recovered | None) -> list[GeneratorProgram]:
    """The seed programs: those the run recorded when it started (when resuming), else
    the config's (default: the built-in seeds for its assessment)."""
    if recovered is not None and recovered.manifest is not None:
        programs = recovered.path / "programs"
        return [
            load_program(programs / f"{seed.key}.py", name=seed.name)
            for seed in recovered.manifest.seeds
        ]
    paths = [Path(p) for p in config.seeds] or seed_generator_paths(config.assess)
    return [_load_seed(p) for p in paths]


def _load_seed(path: Path) -> GeneratorProgram:
    """A seed program, or an :class:`InputError` in one line before the run starts."""
    try:
        return load_program(path)
    except ContractError as err:
        first = err.problems[0]
        more = f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else ""
        raise InputError(
            f"seed {path}: {err.kind.replace('_', ' ')}: {first}{more}".replace("\n", " ")
        ) from None


def _prepare_resume(
    config: EvolveConfig, log: Callable[[str], None]
) -> tuple[EvolveConfig, Recovered]:
    """Check the requested changes, then recover the run in ``config.out``; a run that has
    already run ``config.generations`` raises :class:`RunComplete` (nothing is written)."""
    root = Path(config.out)
    if not (root / "config.yaml").is_file():
        if not root.is_dir():
            raise InputError(f"{root}: no such run directory")
        raise InputError(f"{root}: no config.yaml: not a run directory made by personaevo evolve")
    resume_changes(EvolveConfig.load_run(root), config, 0)  # a refused change: before any repair
    recovered = recover_run(root)
    for note in recovered.notes:
        log(note)
    config, changes = resume_changes(recovered.config, config, max(recovered.generation, 0))
    if recovered.checkpoint is not None and recovered.generation >= config.generations:
        raise RunComplete(str(root), recovered.generation)
    config = config.model_copy(update={"out": str(root)})
    if changes:
        write_config(root, config)
        log(f"{root}: resuming with " + "; ".join(changes))
    return config, recovered


def _check_same_run(recovered: Recovered, space_fingerprint: str, objectives: list[str]) -> None:
    """The space and objectives are those the run started with."""
    manifest = recovered.manifest
    if manifest is None:
        return
    if manifest.space_fingerprint != space_fingerprint:
        raise InputError(
            f"{recovered.config.space}: the space has changed since the run started "
            f"(fingerprint {space_fingerprint[:12]}, was {manifest.space_fingerprint[:12]}): "
            f"its scores would not compare; restore the space file or start a new run"
        )
    if manifest.objectives != objectives:
        raise InputError(
            f"{recovered.path / 'run.json'}: the run's objectives are "
            f"{', '.join(manifest.objectives)}, not {', '.join(objectives)}: the reference "
            f"(or its absence) has changed since the run started; restore it"
        )


def _driver_llm(config: EvolveConfig, llm: LLM | None) -> tuple[LLM | None, bool]:
    """The mutation operator's model: the one passed in, or one built from the config
    (then owned, and closed at the end); none when LLM mutation is off."""
    if llm is not None:
        return llm, False
    if config.llm is None or config.llm_mutation_rate <= 0:
        return None, False
    from personaevo.llm.factory import build_llm

    return build_llm(config.llm), True


def _reference(config: EvolveConfig, space) -> ReferencePopulation | None:
    if config.reference_map:
        return ReferencePopulation.load(
            space, config.reference_map, config.reference, seed=config.seed
        )
    if config.builtin_reference:
        return ReferencePopulation.default_for(space, seed=config.seed)
    return None


def run_evolution(
    config: EvolveConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    llm: LLM | None = None,
) -> tuple[Evolution, RunDirectory, list]:
    """Run (or resume) an evolution; returns the final state, its directory and the
    space/reference used (for reporting).

    With ``resume``, ``config.out`` is the run directory and ``config`` what the run
    should be now: it may differ from the run's ``config.yaml`` only as
    :func:`~personaevo.evolution.resume.resume_changes` allows. Everything that can be
    wrong with the directory is found before Ray starts.

    ``llm`` is the language model of the LLM mutation (the caller keeps ownership);
    without it, one is built from ``config.llm`` when ``config.llm_mutation_rate`` > 0
    and closed when the run ends."""
    recovered = None
    if resume:
        config, recovered = _prepare_resume(config, log)
    elif not config.out:
        config = config.model_copy(update={"out": time.strftime("runs/run-%Y%m%d-%H%M%S")})
    rundir = RunDirectory(config.out)
    space = resolve_space(config.space)
    reference = _reference(config, space)
    objectives = config.resolved_objectives(reference is not None)
    if recovered is not None:
        _check_same_run(recovered, space.fingerprint, objectives)
        if recovered.checkpoint_text is not None:
            rundir.remember_checkpoint(recovered.checkpoint_text)
    programs = _seed_programs(config, recovered)
    if recovered is None:
        rundir.create(config, programs, objectives, space.fingerprint)
    evaluator = RayEvaluator.from_config(
        config, space, reference, on_result=rundir.journal, log=log
    )
    model, owned = _driver_llm(config, llm)
    operator = None
    if model is not None:
        operator = LLMMutation(
            model,
            space,
            reference,
            objectives,
            directives=config.llm_directives,
            full_rewrite_rate=config.llm_full_rewrite_rate,
            params=config.llm.sampling if config.llm is not None else None,
            max_tokens=config.llm_mutation_max_tokens,
        )
    evo = Evolution.from_config(
        config,
        objectives,
        evaluator.evaluate,
        on_evaluated=rundir.record,
        llm_mutation=operator,
        llm_mutation_rate=config.llm_mutation_rate if operator is not None else 0.0,
    )
    if recovered is not None:
        restore(evo, recovered)
    try:
        evaluator.start()
        if recovered is not None and recovered.checkpoint is not None:
            log(f"resumed {rundir.path} after generation {evo.generation}")
        started = recovered is None or recovered.checkpoint is None
        advance(evo, rundir, config, programs if started else None, log)
    finally:
        evaluator.close()
        if owned and model is not None:
            model.close()
    return evo, rundir, [space, reference]


def advance(
    evo: Evolution,
    rundir: RunDirectory,
    config: EvolveConfig,
    seeds: list[GeneratorProgram] | None,
    log: Callable[[str], None],
) -> None:
    """Run ``evo`` to ``config.generations``, committing each generation to ``rundir``:
    from the ``seeds`` (generation 0 not yet finished), else from where it stands."""
    progress = Progress(evo, config)
    if seeds is not None:
        evo.seed_population([(p.name or "seed", p.source) for p in seeds])
        _commit(rundir, evo)
        log(progress.line(evo))
    while evo.generation < config.generations:
        evo.step()
        _commit(rundir, evo)
        log(progress.line(evo))


def _commit(rundir: RunDirectory, evo: Evolution) -> None:
    start = time.perf_counter()
    rundir.checkpoint(evo)
    evo.driver_seconds["io"] += time.perf_counter() - start


class Progress:
    """The progress line: rate and ETA over this session only, so that they are right
    after a resume (the evaluations and generations done before it took no time here)."""

    def __init__(self, evo: Evolution, config: EvolveConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.generation = evo.generation if evo.seeds else -1  # -1: generation 0 to do
        self.evaluations = evo.evaluations

    def rate(self, evo: Evolution, now: float | None = None) -> float:
        """Evaluations per second in this session."""
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return (evo.evaluations - self.evaluations) / elapsed if elapsed > 0 else 0.0

    def eta(self, evo: Evolution, now: float | None = None) -> float | None:
        """Seconds to the last generation at this session's pace (None before one)."""
        done = evo.generation - self.generation
        if done <= 0:
            return None
        elapsed = (now if now is not None else time.monotonic()) - self.started
        return elapsed / done * (self.config.generations - evo.generation)

    def line(self, evo: Evolution, now: float | None = None) -> str:
        best = [max(ind.fitness.values[i] for ind in evo.front) for i in range(len(evo.objectives))]
        bests = "  ".join(
            f"{short_metric_name(name)} {abs(v):.3f}"
            for name, v in zip(evo.objectives, best, strict=True)
        )
        eta = self.eta(evo, now)
        line = (
            f"gen {evo.generation}/{self.config.generations}  evals {evo.evaluations} "
            f"({self.rate(evo, now):.1f}/s)  front {len(evo.front)}  "
            f"ETA {'?' if eta is None else f'{eta:.0f} s'}\n  best: {bests}\n"
            f"  failed: {counts_text(evo.failures)}"
        )
        total = evo.llm_total()
        if evo.llm_mutation is not None or total.calls:
            line += f"\n{llm_line(total, evo.llm_outcomes())}"
            if evo.llm_error:
                line += f"\nlast LLM error: {evo.llm_error[:200]}"
        return line


def llm_line(total: Usage, outcomes: dict[str, int]) -> str:
    """``llm: 120 calls, 45k tokens, 33 s; mutations 12/20 applied`` (cumulative)."""
    tokens = total.prompt_tokens + total.completion_tokens
    shown = f"{tokens / 1000:.1f}k" if tokens >= 1000 else str(tokens)
    line = f"llm: {total.calls} calls, {shown} tokens, {total.seconds:.0f} s"
    asked = sum(outcomes.values())
    if asked:
        applied = outcomes.get("applied", 0) + outcomes.get("applied_after_retry", 0)
        failed = ", ".join(
            f"{k} {v}" for k, v in outcomes.items() if not k.startswith("applied") and v
        )
        line += f"; mutations {applied}/{asked} applied" + (f" ({failed})" if failed else "")
    return line
