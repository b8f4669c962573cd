"""Running, checkpointing and resuming an evolution in a run directory.

A run directory holds::

    config.yaml           the EvolveConfig
    programs/HASH.py      the source of every program seen
    evaluations.jsonl     every evaluation: hash, generation, island, operator, parents, result
    logbook.jsonl         one line per generation (DEAP Logbook records)
    front/*.py            the current Pareto front as standalone programs
    checkpoint.json       populations, front, RNG state and counters after the last generation
    llm_usage.json        language-model use (mutation, evaluation, total) and the LLM
                          mutation outcomes, after the last generation

``evaluations.jsonl`` is also the evaluation cache: a resumed run re-reads it, so no
program is evaluated twice, including those of a generation interrupted by ``kill -9``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from personaevo.errors import InputError
from personaevo.evaluate import Evaluation, seed_generator_paths
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.evaluator import RayEvaluator
from personaevo.evolution.loop import Evolution, Individual
from personaevo.llm.base import LLM, Usage
from personaevo.operators.llm import LLMMutation
from personaevo.programs import ContractError, GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.spaces import resolve_space


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class RunDirectory:
    """Reads and writes one run's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.programs = self.path / "programs"

    def create(self, config: EvolveConfig) -> None:
        if (self.path / "checkpoint.json").exists():
            raise InputError(
                f"{self.path}: already holds a run; use --resume {self.path} or another --out"
            )
        self.programs.mkdir(parents=True, exist_ok=True)
        config.save(self.path / "config.yaml")
        for name in ("evaluations.jsonl", "logbook.jsonl"):
            (self.path / name).write_text("")

    def record(self, ind: Individual, evaluation: Evaluation, generation: int, island: int) -> None:
        program = self.programs / f"{ind.key}.py"
        if not program.exists():
            program.write_text(ind.source, encoding="utf-8")
        line = {
            "hash": ind.key,
            "name": ind.name,
            "generation": generation,
            "island": island,
            "operator": ind.operator,
            "parents": ind.parents,
            "evaluation": evaluation.model_dump(mode="json"),
        }
        with (self.path / "evaluations.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()

    def load_cache(self) -> dict[str, Evaluation]:
        cache = {}
        with (self.path / "evaluations.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by kill -9
                        continue
                    cache[record["hash"]] = Evaluation.model_validate(record["evaluation"])
        return cache

    def checkpoint(self, evo: Evolution) -> None:
        def entry(ind: Individual) -> dict:
            return {
                "key": ind.key,
                "name": ind.name,
                "operator": ind.operator,
                "parents": ind.parents,
            }

        state = {
            "generation": evo.generation,
            "islands": [[entry(ind) for ind in island] for island in evo.islands],
            "seeds": [entry(ind) for ind in evo.seeds],
            "front": [entry(ind) for ind in evo.front],
            "rng": evo.rng.bit_generator.state,
            "variation": [[op, outcome, count] for (op, outcome), count in evo.variation.items()],
            "failures": dict(evo.failures),
            "evaluations": evo.evaluations,
            "logbook": list(evo.logbook),
            "llm_usage": {part: usage.model_dump() for part, usage in evo.llm_usage.items()},
        }
        with (self.path / "logbook.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(evo.logbook[-1]) + "\n")
        front_dir = self.path / "front"
        if front_dir.exists():
            shutil.rmtree(front_dir)
        front_dir.mkdir()
        for ind in evo.front:
            shutil.copy(self.programs / f"{ind.key}.py", front_dir / f"{ind.name}.py")
        _atomic_write(self.path / "llm_usage.json", json.dumps(llm_report(evo), indent=2))
        _atomic_write(self.path / "checkpoint.json", json.dumps(state))

    def restore(self, evo: Evolution) -> None:
        state = json.loads((self.path / "checkpoint.json").read_text(encoding="utf-8"))
        k = len(evo.objectives)

        def individual(entry: dict) -> Individual:
            source = (self.programs / f"{entry['key']}.py").read_text(encoding="utf-8")
            return Individual(
                source, entry["name"], entry["operator"], entry["parents"], k, entry["key"]
            )

        evo.cache = self.load_cache()
        evo.generation = state["generation"]
        evo.islands = [[individual(e) for e in island] for island in state["islands"]]
        evo.seeds = [individual(e) for e in state["seeds"]]
        front = [individual(e) for e in state["front"]]
        evo.rng.bit_generator.state = state["rng"]
        evo.variation = Counter({(op, outcome): c for op, outcome, c in state["variation"]})
        evo.failures = Counter(state["failures"])
        evo.evaluations = state["evaluations"]
        # Mutation use is known only to the driver, so it comes from the checkpoint; the
        # evaluations' use is summed over the cache, which also holds the evaluations of a
        # generation cut short after the last checkpoint (they are not run again).
        evo.llm_usage["mutation"] = Usage.model_validate(
            state.get("llm_usage", {}).get("mutation", {})
        )
        evo.llm_usage["evaluation"] = sum(
            (e.llm_usage for e in evo.cache.values() if e.llm_usage is not None), Usage()
        )
        evo.logbook.extend(state["logbook"])  # rows as saved (record() would split dicts)
        evo.set_fitness([*evo.seeds, *front, *(i for island in evo.islands for i in island)])
        evo.front.update(front)


def llm_report(evo: Evolution) -> dict:
    """What ``llm_usage.json`` holds: usage by part and in total (calls, requests, prompt
    and completion tokens, seconds), and the LLM mutation outcomes."""
    return {
        "generation": evo.generation,
        "model": evo.llm_mutation.llm.name if evo.llm_mutation is not None else None,
        "mutation": evo.llm_usage["mutation"].model_dump(),
        "evaluation": evo.llm_usage["evaluation"].model_dump(),
        "total": evo.llm_total().model_dump(),
        "mutation_outcomes": evo.llm_outcomes(),
        "last_error": evo.llm_error,
    }


def _driver_llm(config: EvolveConfig, llm: LLM | None) -> tuple[LLM | None, bool]:
    """The mutation operator's model: the one passed in, or one built from the config
    (then owned, and closed at the end); none when LLM mutation is off."""
    if llm is not None:
        return llm, False
    if config.llm is None or config.llm_mutation_rate <= 0:
        return None, False
    from personaevo.llm.factory import build_llm

    return build_llm(config.llm), True


def run_evolution(
    config: EvolveConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    llm: LLM | None = None,
) -> tuple[Evolution, RunDirectory, list]:
    """Run (or resume) an evolution; returns the final state, its directory and the
    space/reference used (for reporting).

    ``llm`` is the language model of the LLM mutation (the caller keeps ownership);
    without it, one is built from ``config.llm`` when ``config.llm_mutation_rate`` > 0
    and closed when the run ends."""
    if not config.out:
        config = config.model_copy(update={"out": time.strftime("runs/run-%Y%m%d-%H%M%S")})
    rundir = RunDirectory(config.out)
    space = resolve_space(config.space)
    if config.reference_map:
        reference = ReferencePopulation.load(
            space, config.reference_map, config.reference, seed=config.seed
        )
    elif config.builtin_reference:
        reference = ReferencePopulation.default_for(space, seed=config.seed)
    else:
        reference = None
    objectives = config.resolved_objectives(reference is not None)
    seeds = [Path(p) for p in config.seeds] or seed_generator_paths(config.assess)
    programs = [_load_seed(p) for p in seeds]
    evaluator = RayEvaluator.from_config(config, space, reference)
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
    try:
        evaluator.start()
        started = time.monotonic()
        if resume:
            rundir.restore(evo)
            log(f"resumed {rundir.path} after generation {evo.generation}")
        else:
            rundir.create(config)
            evo.seed_population([(p.name or "seed", p.source) for p in programs])
            rundir.checkpoint(evo)
            log(_progress_line(evo, config, started))
        while evo.generation < config.generations:
            evo.step()
            rundir.checkpoint(evo)
            log(_progress_line(evo, config, started))
    finally:
        evaluator.close()
        if owned and model is not None:
            model.close()
    return evo, rundir, [space, reference]


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


def _progress_line(evo: Evolution, config: EvolveConfig, started: float) -> str:
    elapsed = time.monotonic() - started
    rate = evo.evaluations / elapsed if elapsed > 0 else 0.0
    best = [max(ind.fitness.values[i] for ind in evo.front) for i in range(len(evo.objectives))]
    remaining = config.generations - evo.generation
    eta = elapsed / max(evo.generation, 1) * remaining
    bests = ", ".join(f"{name}={abs(v):.4g}" for name, v in zip(evo.objectives, best, strict=True))
    failures = dict(evo.failures) or "none"
    line = (
        f"gen {evo.generation}/{config.generations}  evals {evo.evaluations} ({rate:.1f}/s)  "
        f"front {len(evo.front)}  best: {bests}  failures: {failures}  ETA {eta:.0f} s"
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
