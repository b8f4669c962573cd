"""Running, checkpointing and resuming an evolution in a run directory.

A run directory holds::

    config.yaml           the EvolveConfig
    programs/HASH.py      the source of every program seen
    evaluations.jsonl     every evaluation: hash, generation, island, operator, parents, result
    logbook.jsonl         one line per generation (DEAP Logbook records)
    front/*.py            the current Pareto front as standalone programs
    checkpoint.json       populations, front, RNG state and counters after the last generation

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
from personaevo.programs import load_program
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
        }
        with (self.path / "logbook.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(evo.logbook[-1]) + "\n")
        front_dir = self.path / "front"
        if front_dir.exists():
            shutil.rmtree(front_dir)
        front_dir.mkdir()
        for ind in evo.front:
            shutil.copy(self.programs / f"{ind.key}.py", front_dir / f"{ind.name}.py")
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
        for record in state["logbook"]:
            evo.logbook.record(**record)
        evo.set_fitness([*evo.seeds, *front, *(i for island in evo.islands for i in island)])
        evo.front.update(front)


def run_evolution(
    config: EvolveConfig, resume: bool = False, log: Callable[[str], None] = print
) -> tuple[Evolution, RunDirectory, list]:
    """Run (or resume) an evolution; returns the final state, its directory and the
    space/reference used (for reporting)."""
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
    seeds = [Path(p) for p in config.seeds] or seed_generator_paths()
    programs = [load_program(p) for p in seeds]
    evaluator = RayEvaluator.from_config(config, space, reference)
    evo = Evolution(
        objectives,
        config.population,
        config.islands,
        config.crossover_rate,
        config.migration_interval,
        config.migrants,
        config.seed,
        evaluator.evaluate,
        on_evaluated=rundir.record,
    )
    evaluator.start()
    try:
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
    return evo, rundir, [space, reference]


def _progress_line(evo: Evolution, config: EvolveConfig, started: float) -> str:
    elapsed = time.monotonic() - started
    rate = evo.evaluations / elapsed if elapsed > 0 else 0.0
    best = [max(ind.fitness.values[i] for ind in evo.front) for i in range(len(evo.objectives))]
    remaining = config.generations - evo.generation
    eta = elapsed / max(evo.generation, 1) * remaining
    bests = ", ".join(f"{name}={abs(v):.4g}" for name, v in zip(evo.objectives, best, strict=True))
    failures = dict(evo.failures) or "none"
    return (
        f"gen {evo.generation}/{config.generations}  evals {evo.evaluations} ({rate:.1f}/s)  "
        f"front {len(evo.front)}  best: {bests}  failures: {failures}  ETA {eta:.0f} s"
    )
