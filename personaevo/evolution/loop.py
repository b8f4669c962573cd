"""The evolution loop: NSGA-II on islands of generator programs, with ring migration.

Each generation, every island makes ``population`` children (crossover with probability
``crossover_rate``, otherwise mutation; see :mod:`personaevo.operators`), the children
not already in the evaluation cache (keyed by AST hash; space, n and seed are fixed per
run) are evaluated in one parallel batch, and the island keeps the best ``population`` of
parents and children by NSGA-II. With a language model, a share ``llm_mutation_rate`` of
the mutations is made by :class:`~personaevo.operators.llm.LLMMutation`: the loop collects
every such request of the generation (all islands) and sends them as one batched call
(plus one for the retries); a request that yields no child is replaced by an AST mutant,
so every island still gets ``population`` children. Every ``migration_interval``
generations the islands send ``migrants`` individuals round the ring
(``deap.tools.migRing``). A Pareto front over all islands is the hall of fame. All
randomness comes from one seeded numpy generator whose state is checkpointed every
generation, so a run resumed after a crash ends where an uninterrupted one does, whatever
the number of workers.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from deap import base, tools

from personaevo.evaluate import Evaluation
from personaevo.evolution.config import EvolveConfig
from personaevo.llm.base import Usage
from personaevo.metrics import ScoreReport
from personaevo.operators import crossover, mutate
from personaevo.operators.llm import LLMMutation
from personaevo.operators.llm_prompt import Candidate
from personaevo.programs import ast_hash


@functools.cache
def fitness_class(n_objectives: int) -> type[base.Fitness]:
    """A DEAP fitness maximising ``n_objectives`` values (minimised metrics are negated).
    An ordinary class made once per size; individuals never leave this process."""
    return type(f"Fitness{n_objectives}", (base.Fitness,), {"weights": (1.0,) * n_objectives})


class Individual:
    """A generator program in a population: source, identity, lineage and fitness."""

    def __init__(
        self,
        source: str,
        name: str,
        operator: str,
        parents: list[str],
        n_objectives: int,
        key: str | None = None,
    ) -> None:
        self.source = source
        self.key = key or ast_hash(source)
        self.name = name
        self.operator = operator
        self.parents = parents
        self.fitness = fitness_class(n_objectives)()

    def __repr__(self) -> str:
        return f"Individual({self.name}, {self.key[:10]}, {self.fitness.values})"


WORST = -1e9
"""The fitness value of an objective a program did not earn (a failed run, say)."""


def objective_values(evaluation: Evaluation, objectives: list[str]) -> tuple[float, ...]:
    """Fitness values (larger is better) from an evaluation; worst values when it failed.

    An objective in :attr:`ScoreReport.COMPLETE_SET_ONLY` (``min_pairwise_distance``,
    the KLs, ...) takes its worst value unless all ``n`` personas asked for are valid and
    none copies a respondent: a set could improve it by turning personas invalid (or into
    copies, which are not scored either)."""
    report = evaluation.report if evaluation.ok else None
    flat = report.flat() if report is not None else {}
    complete = (
        report is not None
        and report.n_valid == report.n_personas
        and (report.reference is None or report.reference.copies == 0)
    )
    values = []
    for name in objectives:
        sign = 1.0 if ScoreReport.direction(name) == "higher" else -1.0
        value = flat.get(name)
        if name in ScoreReport.COMPLETE_SET_ONLY and not complete:
            value = None
        values.append(sign * value if value is not None and math.isfinite(value) else WORST)
    return tuple(values)


class Evolution:
    """State of one run; :meth:`step` advances one generation.

    ``evaluate`` maps an iterable of ``(key, source, name)`` to ``{key: Evaluation}``
    (e.g. a :class:`~personaevo.evolution.evaluator.RayEvaluator`). It may be a
    generator, read once: a generation's children are made as ``evaluate`` reads them,
    so an evaluator that starts work before reading the last task overlaps variation
    with evaluation (the children and their order do not depend on it); ``on_evaluated`` is called
    for each new evaluation with its individual (the run directory records it).
    ``llm_mutation`` (with ``llm_mutation_rate`` > 0) adds LLM-driven mutation.

    ``pending`` holds evaluations that returned before an interruption (a resumed run
    reads them from the run's journal): a child found there is not evaluated again but
    counted as if it had just returned, so the resumed run ends as an uninterrupted one.
    ``evaluated_here`` counts the evaluations this process ran (``kept`` those taken
    from ``pending``); ``driver_seconds`` the driver's time by part (``variation``,
    ``evaluation``: waiting for results beyond making children, ``selection``, ``io``:
    recording).

    Language-model accounting: ``llm_usage["mutation"]`` sums the operator's calls,
    ``llm_usage["evaluation"]`` the ``llm_usage`` of every new evaluation; the logbook
    records their cumulative sum (``llm``) and the LLM mutation outcomes
    (``llm_mutation``) every generation."""

    def __init__(
        self,
        objectives: list[str],
        population: int,
        islands: int,
        crossover_rate: float,
        migration_interval: int,
        migrants: int,
        seed: int,
        evaluate: Callable[[Iterable[tuple[str, str, str]]], dict[str, Evaluation]],
        on_evaluated: Callable[[Individual, Evaluation, int, int], None] | None = None,
        llm_mutation: LLMMutation | None = None,
        llm_mutation_rate: float = 0.0,
    ) -> None:
        self.objectives = objectives
        self.population = population
        self.n_islands = islands
        self.crossover_rate = crossover_rate
        self.migration_interval = migration_interval
        self.migrants = migrants
        self.rng = np.random.default_rng(seed)
        self.evaluate_batch = evaluate
        self.on_evaluated = on_evaluated or (lambda *args: None)
        self.cache: dict[str, Evaluation] = {}
        self.pending: dict[str, Evaluation] = {}
        self.evaluated_here = 0
        self.kept = 0  # evaluations taken from ``pending``
        self.driver_seconds: Counter[str] = Counter()
        self.islands: list[list[Individual]] = []
        # one program per objective vector: neutral mutants do not crowd the front
        self.front = tools.ParetoFront(
            similar=lambda a, b: a.key == b.key or a.fitness.values == b.fitness.values
        )
        self.generation = 0
        self.variation = Counter()  # (operator, outcome) -> count
        self.failures = Counter()  # failure kind -> count
        self.evaluations = 0
        self.logbook = tools.Logbook()
        self.seeds: list[Individual] = []
        self.llm_mutation = llm_mutation if llm_mutation_rate > 0 else None
        self.llm_mutation_rate = llm_mutation_rate
        self.llm_usage = {"mutation": Usage(), "evaluation": Usage()}
        self.llm_error = ""  # the last failed model call of the mutation operator

    @classmethod
    def from_config(
        cls,
        config: EvolveConfig,
        objectives: list[str],
        evaluate: Callable[[Iterable[tuple[str, str, str]]], dict[str, Evaluation]],
        **kwargs,
    ) -> Evolution:
        """A loop with the sizes, rates and seed of an ``EvolveConfig``; ``kwargs`` go to
        the constructor (``on_evaluated``, ``llm_mutation``, ``llm_mutation_rate``)."""
        return cls(
            objectives,
            config.population,
            config.islands,
            config.crossover_rate,
            config.migration_interval,
            config.migrants,
            config.seed,
            evaluate,
            **kwargs,
        )

    # ---------------------------------------------------------------- helpers

    def _assign(
        self, individuals: list[Individual], generation: int, island: int | list[int]
    ) -> None:
        """Evaluate what the cache lacks (one parallel batch), then set fitnesses.
        ``island`` is the island of every individual, or one island per individual."""
        islands = island if isinstance(island, list) else [island] * len(individuals)
        self._evaluate_new(zip(individuals, islands, strict=True), generation)
        self.set_fitness(individuals)

    def _evaluate_new(self, made: Iterable[tuple[Individual, int]], generation: int) -> None:
        """Evaluate, as one batch, the individuals of ``made`` (individual, island) that
        the cache lacks, reading ``made`` only as the evaluator asks for tasks, so that
        making the next child overlaps evaluating the earlier ones. Those in
        ``pending`` are taken from there instead."""
        todo: list[Individual] = []
        home: dict[str, int] = {}
        clock = self.driver_seconds

        def tasks() -> Iterator[tuple[str, str, str]]:
            source = iter(made)
            while True:
                start = time.perf_counter()
                item = next(source, None)
                clock["variation"] += time.perf_counter() - start
                if item is None:
                    return
                ind, where = item
                if ind.key not in self.cache and ind.key not in home:
                    todo.append(ind)
                    home[ind.key] = where
                    if ind.key not in self.pending:
                        yield ind.key, ind.source, ind.name

        stream = tasks()
        first = next(stream, None)
        results: dict[str, Evaluation] = {}
        if first is not None:
            start, making = time.perf_counter(), clock["variation"]
            results = self.evaluate_batch(itertools.chain([first], stream))
            waited = time.perf_counter() - start - (clock["variation"] - making)
            clock["evaluation"] += waited
            self.evaluated_here += len(results)
        start = time.perf_counter()
        for ind in todo:
            if ind.key in results:
                evaluation = results[ind.key]
            else:
                evaluation = self.pending.pop(ind.key)
                self.kept += 1
            self.cache[ind.key] = evaluation
            self.evaluations += 1
            if evaluation.llm_usage is not None:
                self.llm_usage["evaluation"] += evaluation.llm_usage
            if not evaluation.ok:
                self.failures[evaluation.failure or "unknown"] += 1
            self.on_evaluated(ind, evaluation, generation, home[ind.key])
        clock["io"] += time.perf_counter() - start

    def set_fitness(self, individuals: list[Individual]) -> None:
        """Fitnesses from the evaluation cache (every individual must be in it)."""
        for ind in individuals:
            ind.fitness.values = objective_values(self.cache[ind.key], self.objectives)

    def seed_population(self, seeds: list[tuple[str, str]]) -> None:
        """Islands start from the seed programs, filled up with their mutants."""
        k = len(self.objectives)
        self.seeds = [Individual(src, name, "seed", [], k) for name, src in seeds]
        self._assign(self.seeds, 0, -1)
        for _ in range(self.n_islands):
            island = [self._copy(s) for s in self.seeds][: self.population]
            while len(island) < self.population:
                parent = island[int(self.rng.integers(len(self.seeds)))]
                child = self._mutant(parent)
                if child is not None:
                    island.append(child)
            self.islands.append(island)
        for i, island in enumerate(self.islands):
            self._assign(island, 0, i)
        self._record()

    def _copy(self, ind: Individual) -> Individual:
        twin = Individual(
            ind.source, ind.name, ind.operator, ind.parents, len(self.objectives), ind.key
        )
        if ind.fitness.valid:
            twin.fitness.values = ind.fitness.values
        return twin

    def _mutant(self, parent: Individual) -> Individual | None:
        result = mutate(parent.source, self.rng)
        self.variation[(result.operator, "ok" if result.ok else result.failure)] += 1
        if not result.ok:
            return None
        return Individual(
            result.source,
            f"{result.operator}-{result.child_hash[:8]}",
            result.operator,
            [parent.key],
            len(self.objectives),
            result.child_hash,
        )

    def _children(
        self,
        island: list[Individual],
        wanted: int,
        present: set[str],
        llm_parents: list[Individual] | None = None,
    ) -> list[Individual]:
        """Up to ``wanted`` new children (:meth:`_child_stream`) as a list."""
        return list(self._child_stream(island, wanted, present, llm_parents))

    def _child_stream(
        self,
        island: list[Individual],
        wanted: int,
        present: set[str],
        llm_parents: list[Individual] | None = None,
    ) -> Iterator[Individual]:
        """Up to ``wanted`` new children (keys not in ``present``, which is updated), made
        one by one as they are asked for. With ``llm_parents``, a mutation goes to the
        language model with probability ``llm_mutation_rate``: its parent is appended
        there and takes a child's place, to be filled after the generation's batched
        call."""
        count = 0
        attempts = 0
        deferred = 0
        while count + deferred < wanted and attempts < 20 * wanted:
            attempts += 1
            if self.rng.random() < self.crossover_rate and len(island) > 1:
                i, j = self.rng.choice(len(island), size=2, replace=False)
                a, b = island[int(i)], island[int(j)]
                made = []
                for result in crossover(a.source, b.source, self.rng):
                    self.variation[(result.operator, "ok" if result.ok else result.failure)] += 1
                    if result.ok:
                        made.append(
                            Individual(
                                result.source,
                                f"{result.operator}-{result.child_hash[:8]}",
                                result.operator,
                                [a.key, b.key],
                                len(self.objectives),
                                result.child_hash,
                            )
                        )
            else:
                parent = island[int(self.rng.integers(len(island)))]
                if llm_parents is not None and self.rng.random() < self.llm_mutation_rate:
                    llm_parents.append(parent)
                    deferred += 1
                    continue
                child = self._mutant(parent)
                made = [child] if child is not None else []
            for child in made:
                if child.key not in present and count + deferred < wanted:
                    present.add(child.key)
                    count += 1
                    yield child

    def _offspring_stream(
        self, offspring: list[list[Individual]], presents: list[set[str]]
    ) -> Iterator[tuple[Individual, int]]:
        """Each island's children in turn, with their island, appended to ``offspring``
        as they are made."""
        for i, island in enumerate(self.islands):
            for child in self._child_stream(island, self.population, presents[i]):
                offspring[i].append(child)
                yield child, i

    def _candidate(self, ind: Individual) -> Candidate:
        return Candidate(ind.key, ind.name, ind.source, self.cache.get(ind.key))

    def _llm_children(
        self, requests: list[tuple[int, Individual]], presents: list[set[str]]
    ) -> list[list[Individual]]:
        """The language model's children per island: one batched call for every request
        of the generation; outcomes and usage are counted."""
        assert self.llm_mutation is not None
        out: list[list[Individual]] = [[] for _ in self.islands]
        front = [self._candidate(ind) for ind in self.front]
        batch = self.llm_mutation.mutate_batch(
            [self._candidate(parent) for _, parent in requests], front, self.rng
        )
        self.llm_usage["mutation"] += batch.usage
        for (island, parent), child in zip(requests, batch.children, strict=True):
            outcome = child.outcome
            if outcome == "llm_error":
                self.llm_error = child.error
            result = child.result
            if result is not None and result.ok:
                if result.child_hash in presents[island]:
                    outcome = "duplicate"
                else:
                    presents[island].add(result.child_hash)
                    out[island].append(
                        Individual(
                            result.source,
                            f"llm-{result.child_hash[:8]}",
                            "llm",
                            [parent.key],
                            len(self.objectives),
                            result.child_hash,
                        )
                    )
            self.variation[("llm", outcome)] += 1
        return out

    def llm_outcomes(self) -> dict[str, int]:
        """LLM mutation outcomes so far (see :data:`personaevo.operators.llm.OUTCOMES`,
        plus ``duplicate``: a child already in its island)."""
        return {o: c for (op, o), c in sorted(self.variation.items()) if op == "llm"}

    def llm_total(self) -> Usage:
        """Language-model use so far: mutation plus evaluation."""
        return self.llm_usage["mutation"] + self.llm_usage["evaluation"]

    # ------------------------------------------------------------------- step

    def step(self) -> None:
        """One generation on every island, then migration, front and logbook."""
        self.generation += 1
        presents = [{ind.key for ind in island} for island in self.islands]
        offspring: list[list[Individual]] = [[] for _ in self.islands]
        if self.llm_mutation is None:
            # Children are made as the evaluator asks for them, overlapping evaluation.
            self._evaluate_new(self._offspring_stream(offspring, presents), self.generation)
        else:
            start = time.perf_counter()
            requests: list[tuple[int, Individual]] = []
            for i, island in enumerate(self.islands):
                asked: list[Individual] = []
                offspring[i] = self._children(island, self.population, presents[i], asked)
                requests += [(i, parent) for parent in asked]
            if requests:
                made = self._llm_children(requests, presents)
                for i, island in enumerate(self.islands):
                    offspring[i] += made[i]
                    missing = self.population - len(offspring[i])
                    if missing > 0:  # LLM requests without a child: AST mutants instead
                        offspring[i] += self._children(island, missing, presents[i])
            made_all = [(child, i) for i, children in enumerate(offspring) for child in children]
            self.driver_seconds["variation"] += time.perf_counter() - start
            self._evaluate_new(made_all, self.generation)
        start = time.perf_counter()
        batch = [child for children in offspring for child in children]
        self.set_fitness(batch)
        self.front.update(batch)  # a child NSGA-II drops for crowding may still be non-dominated
        for i, children in enumerate(offspring):
            self.islands[i] = tools.selNSGA2(self.islands[i] + children, self.population)
        if self.n_islands > 1 and self.generation % self.migration_interval == 0:
            tools.migRing(self.islands, self.migrants, selection=tools.selNSGA2)
            self.islands = [[self._copy(ind) for ind in island] for island in self.islands]
        self._record()
        self.driver_seconds["selection"] += time.perf_counter() - start

    def _record(self) -> None:
        everyone = [ind for island in self.islands for ind in island]
        self.front.update(everyone)
        stats = tools.Statistics(key=lambda ind: ind.fitness.values)
        stats.register("max", lambda v: np.max(v, axis=0).tolist())
        stats.register("mean", lambda v: np.mean(v, axis=0).tolist())
        self.logbook.record(
            gen=self.generation,
            evals=self.evaluations,
            front=len(self.front),
            time=time.time(),
            **stats.compile(everyone),
        )
        # Logbook.record would move dict values into chapters, out of the row
        self.logbook[-1].update(
            failures=dict(self.failures),
            llm={k: round(v, 3) if isinstance(v, float) else v for k, v in self.llm_total()},
            llm_mutation=self.llm_outcomes(),
        )
