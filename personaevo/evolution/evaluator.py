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
whose actor dies, is retried once on another actor, then recorded as failed with kind
``worker_lost``. The lost actor is replaced, but the replacement gets work only once it
answers: when the cluster has no room for it (a node was lost), the pool goes on with the
actors it has, says so once, and grows back when the replacement is placed (a node
joined). A lost node therefore costs at most one retry of each evaluation it was running.
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
from personaevo.evolution.cluster import connect
from personaevo.evolution.faults import log_finished_evaluation
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
PLACEMENT_GRACE_SECONDS = 5.0  # a worker not placed by then, on a cluster too small: say so
SHORT_CLUSTER_GRACE_SECONDS = 1.0  # the same once the cluster has fewer CPUs than workers
MAX_FAILED_STARTS = 3  # replacements that died starting, in a row, before a slot is dropped


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
        log_finished_evaluation(key)
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
class _Slot:
    """One place in the pool: its actor and whether that actor has answered yet."""

    actor: object
    ping: object = None  # the readiness call while the actor is starting; None once ready
    since: float = 0.0  # when the actor was made
    failed_starts: int = 0
    reported_missing: bool = False
    lane: deque = field(default_factory=deque)

    @property
    def ready(self) -> bool:
        return self.ping is None


@dataclass
class RayEvaluator:
    """A pool of evaluation actors on a (local or remote) Ray cluster.

    ``evaluate(tasks)`` takes ``(key, source, name)`` triples and returns
    ``{key: Evaluation}``; results do not depend on which actor ran what. A program run
    may take ``eval_timeout`` wall-clock seconds and ``cpu_seconds`` of its own CPU time
    (default: ``eval_timeout``). ``on_result(key, evaluation)`` is called for each result
    the moment it returns (the run directory's journal); ``log`` gets the pool's changes
    (shrunk after a lost node, grown back), also kept in ``pool_messages``."""

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
    on_result: Callable[[str, Evaluation], None] | None = None
    log: Callable[[str], None] | None = None
    placement_grace: float = PLACEMENT_GRACE_SECONDS
    restarts: int = 0
    pool_messages: list[str] = field(default_factory=list)
    _slots: list[_Slot] = field(default_factory=list)
    _started_ray: bool = False

    @classmethod
    def from_config(
        cls, config, space: TraitSpace, reference: ReferencePopulation | None, **kwargs
    ) -> RayEvaluator:
        """An evaluator with the sizes, seed and limits of an ``EvolveConfig``;
        ``kwargs`` set the other fields (``on_result``, ``log``)."""
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
            **kwargs,
        )

    @property
    def deadline(self) -> float:
        """Seconds after which a running evaluation counts as hung."""
        return self.eval_timeout + HUNG_MARGIN_SECONDS

    def start(self) -> None:
        """Connect to Ray and make the pool; returns once the actors that the cluster
        can place have answered (their set-up done, so that it neither counts against
        the first evaluations' timeout nor fails late)."""
        check_assessable(self.space, self.assess)
        if self.assess == "questionnaire" and self.llm is None:
            raise InputError("assess: questionnaire needs a language model (llm)")
        self._started_ray = connect(self.address, self.workers) or self._started_ray
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self._space_ref = ray.put(self.space)
        self._reference_ref = ray.put(self.reference)
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.eval_timeout
        self._limits = SandboxLimits(
            wall_seconds=self.eval_timeout, cpu_seconds=min(cpu, self.eval_timeout)
        )
        now = time.monotonic()
        self._slots = [self._new_slot(now) for _ in range(self.workers)]
        while True:
            pings = [slot.ping for slot in self._slots if not slot.ready]
            if not pings:
                return
            ready, _ = ray.wait(pings, num_returns=len(pings), timeout=1.0)
            for slot in self._slots:
                if slot.ping in ready:
                    ray.get(slot.ping)  # a failed set-up (a bad model spec) raises here
                    slot.ping = None
            waited = time.monotonic() - now
            some = any(slot.ready for slot in self._slots)
            short = waited > self.placement_grace and self._cluster_cpus() < self.workers
            if some and (short or waited > self.deadline):
                self._watch_placement(time.monotonic())
                return
            if not some and waited > self.deadline:
                raise InputError(self._unplaceable(waited))

    def _new_slot(self, now: float, failed_starts: int = 0) -> _Slot:
        actor = self._remote.remote(
            self._space_ref,
            self._reference_ref,
            self._limits,
            self.n_probes,
            self.assess,
            self.llm,
        )
        return _Slot(actor, ping=actor.pid.remote(), since=now, failed_starts=failed_starts)

    def _say(self, message: str) -> None:
        self.pool_messages.append(message)
        if self.log is not None:
            self.log(message)

    def _cluster_cpus(self) -> float:
        """The CPUs of the cluster's live nodes."""
        try:
            return float(ray.cluster_resources().get("CPU", 0.0))
        except Exception:  # only for deciding when to say the pool is short
            return float("inf")

    def _free_cpus(self) -> float:
        try:
            return float(ray.available_resources().get("CPU", 0.0))
        except Exception:  # the cluster's state is only for the message
            return float("nan")

    def _unplaceable(self, waited: float) -> str:
        return (
            f"no evaluation worker could be placed on the Ray cluster in {waited:.0f} s "
            f"(each needs 1 CPU; {self._free_cpus():g} CPUs free): add a node or give "
            f"fewer --workers, then --resume the run"
        )

    @property
    def ready_workers(self) -> int:
        """Actors in the pool that answer now."""
        return sum(slot.ready for slot in self._slots)

    def _watch_placement(self, now: float) -> None:
        """Promote actors that answered; replace those that died starting; say once
        when the pool is short of a worker the cluster cannot place, and when it is
        whole again."""
        pings = [slot.ping for slot in self._slots if not slot.ready]
        answered = set(ray.wait(pings, num_returns=len(pings), timeout=0)[0]) if pings else set()
        grew = False
        dropped = []
        for index, slot in enumerate(self._slots):
            if slot.ready or slot.ping not in answered:
                continue
            try:
                ray.get(slot.ping)
            except ray.exceptions.RayError:
                ray.kill(slot.actor, no_restart=True)
                self.restarts += 1
                if slot.failed_starts + 1 >= MAX_FAILED_STARTS:
                    dropped.append(index)
                    continue
                fresh = self._new_slot(now, slot.failed_starts + 1)
                fresh.reported_missing = slot.reported_missing
                self._slots[index] = fresh
                continue
            slot.ping = None
            slot.failed_starts = 0
            grew = grew or slot.reported_missing
            slot.reported_missing = False
        for index in reversed(dropped):
            self._slots.pop(index)
        if dropped:
            self._say(
                f"evaluation pool: {len(dropped)} worker(s) failed to start "
                f"{MAX_FAILED_STARTS} times in a row; continuing with {self.ready_workers}"
            )
        if grew:
            self._say(f"evaluation pool: back to {self.ready_workers} of {self.workers} workers")
        waiting = [s for s in self._slots if not s.ready and not s.reported_missing]
        # A cluster with fewer CPUs than workers cannot place them however long one waits
        # (a node is gone): say so after a second. Otherwise placement may just be slow.
        grace = self.placement_grace
        if waiting and self._cluster_cpus() < self.workers:
            grace = min(grace, SHORT_CLUSTER_GRACE_SECONDS)
        late = [s for s in waiting if now - s.since > grace]
        if late and any(now - s.since > self.deadline for s in late):
            short = True  # the cluster says it has room, but they do not start
        else:
            short = bool(late) and self._cluster_cpus() < self.workers
        if short:
            for slot in late:
                slot.reported_missing = True
            self._say(
                f"evaluation pool: {self.ready_workers} of {self.workers} workers: "
                f"{len(late)} cannot be placed yet (each needs 1 CPU; the cluster has "
                f"{self._cluster_cpus():g}, {self._free_cpus():g} free); continuing with "
                f"{self.ready_workers}, and growing back when a node joins"
            )

    def actor_pids(self) -> list[int]:
        """The process ids of the actors that answer."""
        return ray.get([slot.actor.pid.remote() for slot in self._slots if slot.ready])

    def evaluate(self, tasks: Iterable[tuple[str, str, str]]) -> dict[str, Evaluation]:
        """Evaluate ``(key, source, name)`` tasks; ``{key: Evaluation}``.

        ``tasks`` is read lazily, at most one task per actor ahead of the ones running:
        when it is a generator (the loop's children), making the next child overlaps the
        evaluation of the earlier ones. Each ready actor has a lane of up to
        :data:`PIPELINE_DEPTH` tasks: while its head runs, the next one is already on its
        way, so the actor never waits on the driver. Lanes are topped up beyond one task
        only while the tasks in hand number at least one per actor, so the last tasks of
        a batch are not stuck behind a busy actor while another stands idle. An actor
        runs its calls in order: only a lane's head can be running, and its timeout
        counts from when it reached the head."""
        incoming = iter(tasks)
        queue: deque[_Task] = deque()
        done: dict[str, Evaluation] = {}
        short_since: float | None = None

        def refill() -> None:
            while len(queue) < max(1, self.ready_workers):
                task = next(incoming, None)
                if task is None:
                    return
                queue.append(_Task(*task))

        refill()
        while queue or any(slot.lane for slot in self._slots):
            now = time.monotonic()
            self._watch_placement(now)
            ready = [slot for slot in self._slots if slot.ready]
            if ready:
                short_since = None
            elif short_since is None:
                short_since = now
            elif now - short_since > self.deadline:
                raise InputError(self._unplaceable(now - short_since))
            for slot in ready:
                lane = slot.lane
                while queue and (
                    not lane or (len(lane) < PIPELINE_DEPTH and len(queue) >= len(ready))
                ):
                    task = queue.popleft()
                    task.ref = slot.actor.evaluate.remote(
                        task.key, task.source, task.name, self.n, self.seed
                    )
                    task.tries += 1
                    if not lane:
                        task.started = now
                    lane.append(task)
            refill()  # while the actors run
            waits = [slot.lane[0].ref for slot in self._slots if slot.lane]
            waits += [slot.ping for slot in self._slots if not slot.ready]
            if waits:
                finished, _ = ray.wait(waits, num_returns=1, timeout=1.0)
            else:  # no actor at all (each failed to start): wait out the deadline
                finished = []
                time.sleep(1.0)
            now = time.monotonic()
            for index, slot in enumerate(self._slots):
                lane = slot.lane
                if not lane:
                    continue
                head = lane[0]
                if head.ref in finished:
                    try:
                        evaluation = Evaluation.model_validate(ray.get(head.ref))
                    except ray.exceptions.RayError as err:
                        reason = f"actor died: {type(err).__name__}"
                    else:
                        done[head.key] = evaluation
                        if self.on_result is not None:
                            self.on_result(head.key, evaluation)
                        lane.popleft()
                        if lane:
                            lane[0].started = now
                        continue
                elif now - head.started > self.deadline:
                    reason = f"no answer after {self.deadline:.0f} s"
                else:
                    continue
                lane.popleft()
                for waiting in reversed(lane):  # queued behind the lost head: not a try
                    waiting.tries -= 1
                    queue.appendleft(waiting)
                lane.clear()
                self._replace(index, now)
                if head.tries < 2:
                    queue.appendleft(head)
                else:
                    evaluation = Evaluation(
                        program=head.name,
                        program_hash=head.key,
                        n=self.n,
                        seed=self.seed,
                        ok=False,
                        failure="worker_lost",
                        message=reason,
                    )
                    done[head.key] = evaluation
                    if self.on_result is not None:
                        self.on_result(head.key, evaluation)
        return done

    def _replace(self, index: int, now: float) -> None:
        """A fresh actor in slot ``index``: given work once it answers."""
        _close_then_kill([self._slots[index].actor], CLOSE_LOST_ACTOR_SECONDS)
        self._slots[index] = self._new_slot(now)
        self.restarts += 1

    def close(self) -> None:
        # an actor never placed would not answer ``close``: it is only killed
        _close_then_kill([s.actor for s in self._slots if s.ready], CLOSE_ACTOR_SECONDS)
        for slot in self._slots:
            if not slot.ready:
                ray.kill(slot.actor, no_restart=True)
        self._slots = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
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
