"""Pydantic models at the sandbox boundary: limits, failure kinds, isolation and results."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personaevo.programs import CONTRACT_VERSION, GeneratorProgram

__all__ = [
    "DEFAULT_CPU_MS_PER_PERSONA",
    "DEFAULT_WALL_SECONDS",
    "FailureKind",
    "Isolation",
    "Job",
    "RunResult",
    "SandboxLimits",
    "Validator",
]

DEFAULT_CPU_MS_PER_PERSONA = 20.0
"""CPU milliseconds a program run may use per persona asked for (at least 1 s in all)."""

DEFAULT_WALL_SECONDS = 60.0
"""Wall-clock seconds a program run may take by default (language-model calls included)."""

Validator = Callable[[list[dict]], list[str]]
"""Host-side persona check: given ``[persona]`` return its problems (empty when valid)."""


class SandboxLimits(BaseModel):
    """Resource limits applied to every program run.

    ``memory_mb`` is address space (RLIMIT_AS) the program may use *on top of* the
    pre-imported interpreter (numpy, scipy, ...), so it does not shrink when more is
    preloaded. ``workdir_mb`` bounds the per-worker tmpfs holding working directories (only
    where a mount namespace is available). ``max_processes`` (RLIMIT_NPROC) only binds when
    the program runs under its own unprivileged uid (the sandbox is started as root).
    """

    model_config = ConfigDict(frozen=True)

    wall_seconds: float = Field(30.0, gt=0)
    cpu_seconds: float = Field(30.0, gt=0)
    memory_mb: int = Field(2048, gt=0)
    file_size_mb: int = Field(16, ge=0)
    workdir_mb: int = Field(64, gt=0)
    output_mb: float = Field(64, gt=0)
    stdio_bytes: int = Field(8192, ge=0)
    max_processes: int = Field(64, ge=1)
    max_llm_calls: int = Field(1000, ge=0)
    traceback_lines: int = Field(20, ge=1)

    @classmethod
    def for_personas(
        cls,
        n: int,
        wall_seconds: float,
        cpu_ms_per_persona: float = DEFAULT_CPU_MS_PER_PERSONA,
        **other: Any,
    ) -> SandboxLimits:
        """The one time policy of every program run (``score``, ``evolve``, export's pool
        runs, the simulator's ``--run``): ``wall_seconds`` of wall-clock time (language-model
        calls included) and a CPU budget of
        ``min(wall_seconds, max(1, n * cpu_ms_per_persona / 1000))`` seconds.

        The seeds use 0.04 to 0.23 s of CPU for n = 100 (2 ms per persona at most), so the
        default of 20 ms per persona leaves them a tenfold margin, while a program whose
        loop blew up is stopped after a few seconds instead of holding the run for the
        whole wall-clock limit. ``other`` sets the remaining limits."""
        if cpu_ms_per_persona <= 0 or not math.isfinite(cpu_ms_per_persona):
            raise ValueError(f"cpu_ms_per_persona must be > 0, got {cpu_ms_per_persona!r}")
        cpu = min(wall_seconds, max(1.0, n * cpu_ms_per_persona / 1000.0))
        return cls(wall_seconds=wall_seconds, cpu_seconds=cpu, **other)


class FailureKind(StrEnum):
    """Why a run did not produce valid personas (values are stable strings)."""

    UNREADABLE = "unreadable"
    """The program file cannot be read, or is not UTF-8 text (found before running)."""
    SYNTAX_ERROR = "syntax_error"
    """The source does not parse or compile."""
    CONTRACT_VIOLATION = "contract_violation"
    """Static contract check failed, or no callable ``generate`` after running the module."""
    EXCEPTION = "exception"
    """The program raised (RecursionError included); see ``traceback``."""
    TIMEOUT = "timeout"
    """Wall-clock or CPU-time limit hit."""
    MEMORY = "memory"
    """MemoryError, or killed by a signal near the address-space limit."""
    OUTPUT_TOO_LARGE = "output_too_large"
    """The serialised personas exceeded ``output_mb``."""
    INVALID_PERSONAS = "invalid_personas"
    """Not a list of persona dicts, non-JSON / non-finite values, or no valid persona."""
    WRONG_COUNT = "wrong_count"
    """More personas than the ``n`` asked for: never scored (``n_returned`` says how many).
    Fewer is not a failure of its own: the missing ones count as invalid when scored."""
    CRASHED = "crashed"
    """Killed by a signal, ``os._exit`` without output, or it killed its sandbox worker."""
    EXITED = "exited"
    """The program called ``sys.exit`` (raised SystemExit)."""
    SANDBOX_ERROR = "sandbox_error"
    """The sandbox itself failed (not the program's fault)."""


CHILD_REPORTED_KINDS = frozenset(
    {
        FailureKind.SYNTAX_ERROR,
        FailureKind.CONTRACT_VIOLATION,
        FailureKind.EXCEPTION,
        FailureKind.MEMORY,
        FailureKind.OUTPUT_TOO_LARGE,
        FailureKind.INVALID_PERSONAS,
        FailureKind.EXITED,
        FailureKind.SANDBOX_ERROR,
    }
)
"""Kinds the in-child runner may report; anything else from the child is a crash."""


class Isolation(BaseModel):
    """Which protections were actually applied to a worker (and so to its runs)."""

    model_config = ConfigDict(frozen=True)

    network: bool = False
    """Empty network namespace: no interfaces but a down loopback."""
    pid: bool = False
    """Own PID namespace: cannot see or signal host processes; all killed with the worker."""
    mount: bool = False
    """Own mount namespace: filesystem read-only except a private tmpfs work area."""
    ipc: bool = False
    user_namespace: bool = False
    """Namespaces were created through an unprivileged user namespace (not root)."""
    uid: int | None = None
    """Unprivileged uid the program runs as, or None when it keeps the host's uid."""
    syscall_filter: bool = False
    """A seccomp filter (libseccomp) refuses the syscalls a generator never needs."""
    notes: list[str] = Field(default_factory=list)


class RunResult(BaseModel):
    """Outcome of one program run; never raised, always returned."""

    ok: bool
    failure: FailureKind | None = None
    message: str = ""
    traceback: str = ""
    personas: list[dict[str, Any]] = Field(default_factory=list)
    """Valid personas only (structurally valid and accepted by the validator)."""
    n_requested: int = 0
    n_returned: int | None = None
    """How many personas the program returned (valid or not); None when it returned no
    list (it failed before, or wrote something else)."""
    n_invalid: int = 0
    problems: list[str] = Field(default_factory=list)
    """Per-persona and contract problems (capped), useful as mutation feedback."""
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    """Total bytes the program wrote to stdout (``stdout`` keeps only the first part)."""
    stderr_bytes: int = 0
    wall_seconds: float = 0.0
    """Host-measured time of the whole run, sandbox overhead included."""
    program_seconds: float | None = None
    """In-child time spent compiling, executing the module and calling ``generate``."""
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    program_name: str = ""
    program_hash: str = ""
    """``ast_hash`` of the program; empty when the source does not parse."""
    seed: int = 0
    network_isolated: bool = False
    isolation: Isolation = Field(default_factory=Isolation)
    worker: int | None = None
    contract_version: str = CONTRACT_VERSION


@dataclass(frozen=True)
class Job:
    """One evaluation for :meth:`personaevo.sandbox.Sandbox.map`."""

    program: GeneratorProgram | str
    space: Any
    n: int
    seed: int
    llm: Any = None
    validator: Validator | None = None
    limits: SandboxLimits | None = None
