"""The public :class:`Sandbox`: a warm pool of zygote workers running generator programs."""

from __future__ import annotations

import os
import pickle
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from personaevo.program_imports import PROGRAM_MODULES
from personaevo.programs import ContractError, GeneratorProgram, ast_hash, load_program
from personaevo.sandbox._classify import classify
from personaevo.sandbox._leases import (
    OwnedDirectory,
    SlotLease,
    acquire_slot,
    create_owned_directory,
    sweep_abandoned_directories,
)
from personaevo.sandbox._worker import REPO_ROOT, JobSpec, Worker, WorkerDiedError
from personaevo.sandbox.models import (
    FailureKind,
    Isolation,
    Job,
    RunResult,
    SandboxLimits,
    Validator,
)

DEFAULT_PRELOAD: tuple[str, ...] = (
    "numpy",
    "scipy",
    "scipy.stats",
    "scipy.stats.qmc",
    "scipy.spatial",
    "scipy.special",
    "allpairspy",
    "personaevo",
    "bisect",
    "collections",
    "dataclasses",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "re",
    "statistics",
    "string",
    "typing",
    *sorted(m for m in PROGRAM_MODULES if m != "__future__"),
)
"""Modules every worker imports once, so programs do not pay for them: every module a
program may import is among them, so that none has to be found on disk after the
worker entered its allow-listed filesystem."""

DEFAULT_UID_BASE = 2_901_000_000
"""As root, a worker runs programs as uid/gid ``DEFAULT_UID_BASE + K``, ``K`` a slot that no
other live worker on the machine holds (:mod:`personaevo.sandbox._leases`). The range is
disjoint from the one of versions without slots (2,900,000,000 + worker index), so that
an older version running on the same machine never shares a uid with this one."""

Isolating = Literal["auto", "none"]


def _shutdown(workers: list[Worker], base_dir: OwnedDirectory, leases: list[SlotLease]) -> None:
    for worker in workers:
        worker.stop()
    for lease in leases:
        lease.release()
    base_dir.remove()


class Sandbox:
    """Runs generator programs, each in a fresh, confined process, on a warm worker pool.

    Each of ``workers`` workers is a *zygote*: a clean interpreter (no inherited
    environment) that has pre-imported ``preload`` and forks one child per program. With
    ``isolation="auto"`` each zygote lives in its own PID, network, mount and IPC
    namespaces (root, or unprivileged user namespaces) and, as root, programs run as an
    unprivileged uid; ``"none"`` keeps only rlimits, a session/process-group kill and the
    working directory (what an unprivileged host without user namespaces gets). See
    ``docs/sandbox.md`` for what is and is not protected.

    ``run``/``submit``/``map`` never raise for a program's fault: a :class:`RunResult`
    records the failure kind. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 1,
        limits: SandboxLimits | None = None,
        *,
        isolation: Isolating = "auto",
        preload: Iterable[str] = DEFAULT_PRELOAD,
        uid_base: int = DEFAULT_UID_BASE,
        start_timeout: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.limits = limits or SandboxLimits()
        self._start_timeout = start_timeout
        sweep_abandoned_directories()
        self._owned_dir = create_owned_directory()
        self._base_dir = self._owned_dir.path
        os.chmod(self._base_dir, 0o711)
        # Programs run as uid_base + K for a slot K held machine-wide (only as root).
        own_uids = isolation != "none" and os.geteuid() == 0
        self._leases: list[SlotLease] = []
        try:
            if own_uids:
                self._leases = [acquire_slot() for _ in range(workers)]
        except BaseException:
            _shutdown([], self._owned_dir, self._leases)
            raise
        config = {
            "isolation": isolation,
            "preload": list(preload),
            "uid": None if isolation == "none" else uid_base,
            "base_dir": self._base_dir,
            "workdir_mb": self.limits.workdir_mb,
            "repo_root": REPO_ROOT,
            "host_mount_ns": os.readlink("/proc/self/ns/mnt"),
        }
        self._workers = []
        for index in range(workers):
            lease = self._leases[index] if self._leases else None
            uid = None if config["uid"] is None or lease is None else uid_base + lease.slot
            cfg = dict(config, uid=uid)
            self._workers.append(Worker(index, cfg, self._base_dir, lease))
        self._finalizer = weakref.finalize(
            self, _shutdown, self._workers, self._owned_dir, self._leases
        )
        try:
            for worker in self._workers:
                worker.spawn()
            for worker in self._workers:
                worker.wait_ready(start_timeout)
        except BaseException:
            self._finalizer()
            raise
        self._idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="personaevo-sandbox")
        self._closed = False
        self._lock = threading.Lock()
        self.restarts = 0
        """How many times a dead worker was restarted."""

    # ------------------------------------------------------------------ info

    @property
    def isolation(self) -> Isolation:
        """Isolation applied by the first worker (all workers are started alike)."""
        return self._workers[0].isolation

    @property
    def network_isolated(self) -> bool:
        """True when programs run without network access."""
        return self.isolation.network

    @property
    def preload_errors(self) -> list[str]:
        """Preload modules that failed to import in the workers (e.g. a broken package)."""
        return self._workers[0].preload_errors

    def worker_pids(self) -> list[int | None]:
        """Host pids of the workers' zygote process groups (for monitoring and tests)."""
        return [w.pid for w in self._workers]

    def worker_uids(self) -> list[int | None]:
        """The uid each worker runs programs as (None: the host's): one per machine-wide
        slot, so no two live workers on the machine share one."""
        return [w.isolation.uid for w in self._workers]

    # ------------------------------------------------------------------ running

    def run(
        self,
        program: GeneratorProgram | str | os.PathLike[str],
        space: Any,
        n: int,
        seed: int,
        llm: Any = None,
        validator: Validator | None = None,
        limits: SandboxLimits | None = None,
    ) -> RunResult:
        """Run ``program.generate(space, n, rng=default_rng(seed), llm)`` in the sandbox.

        ``program`` is a loaded program or a path/source for :func:`load_program` (a
        contract failure is returned as a result, not raised). ``space`` must pickle.
        ``llm``, if given, stays in this process; the program gets a proxy to it.
        ``validator`` is called here with ``[persona]`` for each structurally valid persona.
        ``limits`` overrides the sandbox's limits for this run (``workdir_mb`` excepted).
        """
        return self.submit(program, space, n, seed, llm, validator, limits).result()

    def submit(
        self,
        program: GeneratorProgram | str | os.PathLike[str],
        space: Any,
        n: int,
        seed: int,
        llm: Any = None,
        validator: Validator | None = None,
        limits: SandboxLimits | None = None,
    ) -> Future[RunResult]:
        """Like :meth:`run`, but return at once with a future for the result."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        prepared = self._prepare(program, space, n, seed, llm, validator, limits)
        if isinstance(prepared, RunResult):
            future: Future[RunResult] = Future()
            future.set_result(prepared)
            return future
        return self._executor.submit(self._execute, prepared)

    def map(self, jobs: Iterable[Job | Mapping[str, Any]]) -> list[RunResult]:
        """Run many jobs across the pool; results in the order of ``jobs``."""
        futures = []
        for job in jobs:
            j = job if isinstance(job, Job) else Job(**job)
            futures.append(
                self.submit(j.program, j.space, j.n, j.seed, j.llm, j.validator, j.limits)
            )
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the workers (killing anything still running) and remove temporary files."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _prepare(
        self,
        program: GeneratorProgram | str | os.PathLike[str],
        space: Any,
        n: int,
        seed: int,
        llm: Any,
        validator: Validator | None,
        limits: SandboxLimits | None,
    ) -> JobSpec | RunResult:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(program, GeneratorProgram):
            try:
                program = load_program(program)
            except ContractError as exc:
                try:
                    digest = ast_hash(str(program)) if exc.kind != "syntax_error" else ""
                except (SyntaxError, ValueError):
                    digest = ""
                return RunResult(
                    ok=False,
                    failure=FailureKind(exc.kind),
                    message=str(exc),
                    problems=[str(p) for p in exc.problems],
                    program_name=exc.name,
                    program_hash=digest,
                    n_requested=n,
                    seed=seed,
                )
        return JobSpec(
            program=program,
            space=pickle.dumps(space, protocol=5),
            n=n,
            seed=seed,
            llm=llm,
            validator=validator,
            limits=limits or self.limits,
        )

    def _acquire(self) -> Worker:
        worker = self._idle.get()
        if not worker.alive():
            try:
                self._restart(worker)
            except BaseException:
                self._idle.put(worker)
                raise
        return worker

    def _restart(self, worker: Worker) -> None:
        with self._lock:
            self.restarts += 1
        worker.spawn()
        worker.wait_ready(self._start_timeout)

    def _release(self, worker: Worker) -> None:
        if worker.alive() or self._closed:
            self._idle.put(worker)
            return

        def restart_then_release() -> None:  # restart off the caller's path
            try:
                self._restart(worker)
            except WorkerDiedError:
                pass  # retried by the next _acquire
            finally:
                if self._closed:
                    worker.stop()
                self._idle.put(worker)

        threading.Thread(target=restart_then_release, daemon=True).start()

    def _execute(self, spec: JobSpec) -> RunResult:
        start = time.monotonic()
        try:
            worker = self._acquire()
        except WorkerDiedError as exc:
            return self._sandbox_error(spec, str(exc), start)
        try:
            try:
                io = worker.execute(spec)
            except WorkerDiedError:  # died while idle, before the job was sent: retry once
                self._restart(worker)
                io = worker.execute(spec)
        except WorkerDiedError as exc:
            return self._sandbox_error(spec, str(exc), start, worker.slot)
        except BaseException:  # interrupted mid-job: its state is unknown, start afresh
            worker.stop()
            raise
        finally:
            self._release(worker)
        wall = time.monotonic() - start
        verdict = classify(io.outcome, spec.limits, spec.n, spec.validator)
        done = io.outcome.done or {}
        isolation = worker.isolation
        return RunResult(
            ok=verdict.failure is None,
            failure=verdict.failure,
            message=verdict.message,
            traceback=verdict.traceback,
            personas=verdict.personas,
            n_requested=spec.n,
            n_returned=verdict.n_returned,
            n_invalid=verdict.n_invalid,
            problems=[str(p) for p in spec.program.problems] + verdict.problems,
            stdout=io.stdout.text(),
            stderr=io.stderr.text(),
            stdout_bytes=io.stdout.total,
            stderr_bytes=io.stderr.total,
            wall_seconds=wall,
            program_seconds=verdict.program_seconds,
            cpu_seconds=done.get("cpu"),
            max_rss_mb=done["maxrss_kb"] / 1024 if "maxrss_kb" in done else None,
            exit_code=verdict.exit_code,
            signal=verdict.signal,
            program_name=spec.program.name,
            program_hash=spec.program.ast_hash,
            seed=spec.seed,
            network_isolated=isolation.network,
            isolation=isolation,
            worker=worker.slot,
        )

    def _sandbox_error(
        self, spec: JobSpec, message: str, start: float, slot: int | None = None
    ) -> RunResult:
        return RunResult(
            ok=False,
            failure=FailureKind.SANDBOX_ERROR,
            message=message,
            n_requested=spec.n,
            wall_seconds=time.monotonic() - start,
            program_name=spec.program.name,
            program_hash=spec.program.ast_hash,
            seed=spec.seed,
            worker=slot,
        )
