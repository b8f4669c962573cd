"""Distributed evaluation on Ray: actors that run programs in the sandbox and score them.

Each actor owns a one-worker :class:`~personaevo.sandbox.Sandbox` (whose limits hold
inside the Ray worker) and the space and reference, sent once. Actors receive program
*source text* and return :class:`~personaevo.evaluate.Evaluation` dicts: never
individuals, so no DEAP ``creator`` class crosses a process boundary.

Faults: an evaluation that outlives ``eval_timeout`` plus a margin (a hung actor), or
whose actor dies, is retried once on a fresh actor, then recorded as failed with kind
``worker_lost``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import ray

from personaevo.evaluate import Evaluation, generator_space, score_run
from personaevo.programs import load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits
from personaevo.spaces import TraitSpace

HUNG_MARGIN_SECONDS = 30.0


class _Actor:
    """Runs inside a Ray worker process."""

    def __init__(
        self,
        space: TraitSpace,
        reference: ReferencePopulation | None,
        limits: SandboxLimits,
        n_probes: int,
    ) -> None:
        self.space = space
        self.reference = reference
        self.n_probes = n_probes
        self.sandbox = Sandbox(workers=1, limits=limits)
        self.views: dict[int, object] = {}

    def evaluate(self, source: str, name: str, n: int, seed: int) -> dict:
        if seed not in self.views:
            self.views[seed] = generator_space(self.space, self.reference, seed=seed)
        program = load_program(source, name=name, check=False)
        result = self.sandbox.run(program, self.views[seed], n=n, seed=seed)
        return score_run(result, self.space, self.reference, seed, self.n_probes).model_dump(
            mode="json"
        )

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Task:
    key: str
    source: str
    name: str
    tries: int = 0
    started: float = 0.0
    ref: object = None
    actor: int = -1


@dataclass
class RayEvaluator:
    """A pool of evaluation actors on a (local or remote) Ray cluster.

    ``evaluate(tasks)`` takes ``(key, source, name)`` triples and returns
    ``{key: Evaluation}``; results do not depend on which actor ran what."""

    space: TraitSpace
    reference: ReferencePopulation | None
    workers: int = 2
    n: int = 100
    seed: int = 0
    n_probes: int = 5000
    eval_timeout: float = 60.0
    address: str | None = None
    restarts: int = 0
    _actors: list = field(default_factory=list)
    _started_ray: bool = False

    @classmethod
    def from_config(
        cls, config, space: TraitSpace, reference: ReferencePopulation | None
    ) -> RayEvaluator:
        """An evaluator with the sizes, seed and limits of an ``EvolveConfig``."""
        return cls(
            space,
            reference,
            workers=config.workers,
            n=config.n,
            seed=config.seed,
            n_probes=config.probes,
            eval_timeout=config.eval_timeout,
            address=config.address,
        )

    def start(self) -> None:
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.workers}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
            self._started_ray = True
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self._space_ref = ray.put(self.space)
        self._reference_ref = ray.put(self.reference)
        limits = SandboxLimits(wall_seconds=self.eval_timeout, cpu_seconds=self.eval_timeout)
        self._limits = limits
        self._actors = [self._new_actor() for _ in range(self.workers)]

    def _new_actor(self):
        return self._remote.remote(
            self._space_ref, self._reference_ref, self._limits, self.n_probes
        )

    def actor_pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self._actors])

    def evaluate(self, tasks: list[tuple[str, str, str]]) -> dict[str, Evaluation]:
        queue = [_Task(key, source, name) for key, source, name in tasks]
        running: dict[int, _Task] = {}
        done: dict[str, Evaluation] = {}
        deadline = self.eval_timeout + HUNG_MARGIN_SECONDS
        while queue or running:
            for slot in range(len(self._actors)):
                if slot not in running and queue:
                    task = queue.pop(0)
                    task.ref = self._actors[slot].evaluate.remote(
                        task.source, task.name, self.n, self.seed
                    )
                    task.started, task.actor, task.tries = time.monotonic(), slot, task.tries + 1
                    running[slot] = task
            refs = [t.ref for t in running.values()]
            ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
            now = time.monotonic()
            for slot, task in list(running.items()):
                if task.ref in ready:
                    try:
                        done[task.key] = Evaluation.model_validate(ray.get(task.ref))
                        del running[slot]
                        continue
                    except ray.exceptions.RayError as err:
                        reason = f"actor died: {type(err).__name__}"
                elif now - task.started > deadline:
                    reason = f"no answer after {deadline:.0f} s"
                else:
                    continue
                del running[slot]
                self._replace(slot)
                if task.tries < 2:
                    queue.insert(0, task)
                else:
                    done[task.key] = Evaluation(
                        program=task.name,
                        program_hash=task.key,
                        n=self.n,
                        seed=self.seed,
                        ok=False,
                        failure="worker_lost",
                        message=reason,
                    )
        return done

    def _replace(self, slot: int) -> None:
        ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._new_actor()
        self.restarts += 1

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
