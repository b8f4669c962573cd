"""Distributed evaluation on Ray: actors that run programs in the sandbox and score them.

Each actor owns a one-worker :class:`~personaevo.sandbox.Sandbox` (whose limits hold
inside the Ray worker) and the space and reference, sent once. Actors receive program
*source text* and return :class:`~personaevo.evaluate.Evaluation` dicts: never
individuals, so no DEAP ``creator`` class crosses a process boundary.

With a language model (``llm``: an :class:`~personaevo.llm.config.LLMConfig`, or a
zero-argument factory returning an :class:`~personaevo.llm.base.LLM`) each actor builds
its own client on first use; programs get it as ``llm`` through the sandbox, the
questionnaire assessor asks it, and each evaluation carries the calls it cost
(``Evaluation.llm_usage``). The embedding assessor's model is loaded once per actor.

Faults: an evaluation that outlives ``eval_timeout`` plus a margin (a hung actor), or
whose actor dies, is retried once on a fresh actor, then recorded as failed with kind
``worker_lost``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import ray

from personaevo.assess import check_assessable, make_assessor
from personaevo.errors import InputError
from personaevo.evaluate import Evaluation, generator_space, score_run
from personaevo.llm.base import LLM, Message, ProgramLLM, SamplingParams
from personaevo.llm.config import LLMConfig
from personaevo.programs import GeneratorProgram
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits, sweep_abandoned_directories
from personaevo.spaces import TraitSpace

HUNG_MARGIN_SECONDS = 30.0
CLOSE_ACTOR_SECONDS = 30.0
"""How long ``close`` waits for the actors to close their sandboxes."""
CLOSE_LOST_ACTOR_SECONDS = 2.0
"""How long a hung or dead actor gets to close its sandbox before it is replaced."""
PIPELINE_DEPTH = 2


LLMSpec = LLMConfig | Callable[[], LLM]


class LazyLLM(LLM):
    """Builds the client from its spec on the first call, so that an actor whose programs
    never call the model and whose assessment needs none never loads one."""

    def __init__(self, spec: LLMSpec) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.backend if isinstance(spec, LLMConfig) else "llm"
        self._inner: LLM | None = None
        self._build_lock = threading.Lock()

    @property
    def inner(self) -> LLM:
        with self._build_lock:
            if self._inner is None:
                if isinstance(self.spec, LLMConfig):
                    from personaevo.llm.factory import build_llm

                    self._inner = build_llm(self.spec)
                else:
                    self._inner = self.spec()
                self.name = self._inner.name
            return self._inner

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        return self.inner.chat(conversations, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self.inner.complete(prompts, params)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


class _Actor:
    """Runs inside a Ray worker process."""

    def __init__(
        self,
        space: TraitSpace,
        reference: ReferencePopulation | None,
        limits: SandboxLimits,
        n_probes: int,
        assess: str = "explicit",
        llm: LLMSpec | None = None,
    ) -> None:
        self.space = space
        self.reference = reference
        self.n_probes = n_probes
        self.sandbox = Sandbox(workers=1, limits=limits)
        self.views: dict[int, object] = {}
        self.llm = LazyLLM(llm) if llm is not None else None
        self.sampling = llm.sampling if isinstance(llm, LLMConfig) else None
        self.assessor = make_assessor(assess, llm=self.llm)
        if assess == "embedding":
            self.assessor.frames(space)  # load the embedding model now, once per actor
        if assess == "questionnaire":
            _ = self.llm.inner  # build the model now: a bad spec fails before any work

    def evaluate(self, key: str, source: str, name: str, n: int, seed: int) -> dict:
        if seed not in self.views:
            self.views[seed] = generator_space(self.space, self.reference, seed=seed)
        # The driver contract-checked and hashed this source: skip both here.
        program = GeneratorProgram(source=source, name=name, ast_hash=key, checked=False)
        before = self.llm.usage_snapshot() if self.llm is not None else None
        program_llm = ProgramLLM(self.llm, self.sampling) if self.llm is not None else None
        result = self.sandbox.run(program, self.views[seed], n=n, seed=seed, llm=program_llm)
        evaluation = score_run(
            result, self.space, self.reference, seed, self.n_probes, self.assessor
        )
        if self.llm is not None:
            evaluation.llm_usage = self.llm.usage_snapshot() - before
        return evaluation.model_dump(mode="json")

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        """Stop the sandbox and remove its temporary files (before the actor is killed:
        ``ray.kill`` skips finalizers)."""
        self.sandbox.close()
        if self.llm is not None:
            self.llm.close()


@dataclass
class _Task:
    key: str
    source: str
    name: str
    tries: int = 0
    started: float = 0.0
    ref: object = None


@dataclass
class RayEvaluator:
    """A pool of evaluation actors on a (local or remote) Ray cluster.

    ``evaluate(tasks)`` takes ``(key, source, name)`` triples and returns
    ``{key: Evaluation}``; results do not depend on which actor ran what. A program run
    may take ``eval_timeout`` wall-clock seconds and ``cpu_seconds`` of its own CPU time
    (default: ``eval_timeout``)."""

    space: TraitSpace
    reference: ReferencePopulation | None
    workers: int = 2
    n: int = 100
    seed: int = 0
    n_probes: int = 5000
    eval_timeout: float = 60.0
    cpu_seconds: float | None = None
    address: str | None = None
    assess: str = "explicit"
    llm: LLMSpec | None = None
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
            cpu_seconds=config.limits().cpu_seconds,
            address=config.address,
            assess=config.assess,
            # a questionnaire needs a model: the tiny one unless the run names another
            llm=config.llm or (LLMConfig() if config.assess == "questionnaire" else None),
        )

    def start(self) -> None:
        check_assessable(self.space, self.assess)
        if self.assess == "questionnaire" and self.llm is None:
            raise InputError("assess: questionnaire needs a language model (llm)")
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.workers}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
            self._started_ray = True
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self._space_ref = ray.put(self.space)
        self._reference_ref = ray.put(self.reference)
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.eval_timeout
        limits = SandboxLimits(
            wall_seconds=self.eval_timeout, cpu_seconds=min(cpu, self.eval_timeout)
        )
        self._limits = limits
        self._actors = [self._new_actor() for _ in range(self.workers)]
        # Wait for the actors' set-up (sandbox, embedding model, a questionnaire's model)
        # so that it neither counts against the first evaluations' timeout nor fails late.
        self.actor_pids()

    def _new_actor(self):
        return self._remote.remote(
            self._space_ref,
            self._reference_ref,
            self._limits,
            self.n_probes,
            self.assess,
            self.llm,
        )

    def actor_pids(self) -> list[int]:
        return ray.get([a.pid.remote() for a in self._actors])

    def evaluate(self, tasks: Iterable[tuple[str, str, str]]) -> dict[str, Evaluation]:
        """Evaluate ``(key, source, name)`` tasks; ``{key: Evaluation}``.

        ``tasks`` is read lazily, at most one task per actor ahead of the ones running:
        when it is a generator (the loop's children), making the next child overlaps the
        evaluation of the earlier ones. Each actor has a lane of up to
        :data:`PIPELINE_DEPTH` tasks: while its head runs, the next one is already on its
        way, so the actor never waits on the driver. Lanes are topped up beyond one task
        only while the tasks in hand number at least one per actor, so the last tasks of
        a batch are not stuck behind a busy actor while another stands idle. An actor
        runs its calls in order: only a lane's head can be running, and its timeout
        counts from when it reached the head."""
        incoming = iter(tasks)
        queue: deque[_Task] = deque()
        lanes: list[deque[_Task]] = [deque() for _ in self._actors]
        done: dict[str, Evaluation] = {}
        deadline = self.eval_timeout + HUNG_MARGIN_SECONDS

        def refill() -> None:
            while len(queue) < len(lanes):
                task = next(incoming, None)
                if task is None:
                    return
                queue.append(_Task(*task))

        refill()
        while queue or any(lanes):
            now = time.monotonic()
            for slot, lane in enumerate(lanes):
                while queue and (
                    not lane or (len(lane) < PIPELINE_DEPTH and len(queue) >= len(lanes))
                ):
                    task = queue.popleft()
                    task.ref = self._actors[slot].evaluate.remote(
                        task.key, task.source, task.name, self.n, self.seed
                    )
                    task.tries += 1
                    if not lane:
                        task.started = now
                    lane.append(task)
            refill()  # while the actors run
            heads = [lane[0].ref for lane in lanes if lane]
            ready, _ = ray.wait(heads, num_returns=1, timeout=1.0)
            now = time.monotonic()
            for slot, lane in enumerate(lanes):
                if not lane:
                    continue
                head = lane[0]
                if head.ref in ready:
                    try:
                        done[head.key] = Evaluation.model_validate(ray.get(head.ref))
                        lane.popleft()
                        if lane:
                            lane[0].started = now
                        continue
                    except ray.exceptions.RayError as err:
                        reason = f"actor died: {type(err).__name__}"
                elif now - head.started > deadline:
                    reason = f"no answer after {deadline:.0f} s"
                else:
                    continue
                lane.popleft()
                for waiting in reversed(lane):  # queued behind the lost head: not a try
                    waiting.tries -= 1
                    queue.appendleft(waiting)
                lane.clear()
                self._replace(slot)
                if head.tries < 2:
                    queue.appendleft(head)
                else:
                    done[head.key] = Evaluation(
                        program=head.name,
                        program_hash=head.key,
                        n=self.n,
                        seed=self.seed,
                        ok=False,
                        failure="worker_lost",
                        message=reason,
                    )
        return done

    def _replace(self, slot: int) -> None:
        _close_then_kill([self._actors[slot]], CLOSE_LOST_ACTOR_SECONDS)
        self._actors[slot] = self._new_actor()
        self.restarts += 1

    def close(self) -> None:
        _close_then_kill(self._actors, CLOSE_ACTOR_SECONDS)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
        sweep_abandoned_directories()  # what an actor that could not close left behind


def _close_then_kill(actors: list, timeout: float) -> None:
    """Ask each actor to close its sandbox (in parallel), then kill it. An actor that is
    dead or busy past ``timeout`` is killed anyway; the directory its sandbox leaves is
    removed by the next sweep (its owner lock dies with it)."""
    pending = [actor.close.remote() for actor in actors]
    if pending:
        with contextlib.suppress(ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            ray.wait(pending, num_returns=len(pending), timeout=timeout)
    for actor in actors:
        ray.kill(actor, no_restart=True)
