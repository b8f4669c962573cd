"""Run untrusted persona-generator programs in confined, disposable processes.

>>> with Sandbox(workers=2, limits=SandboxLimits(wall_seconds=10)) as sandbox:
...     result = sandbox.run(program, space, n=100, seed=0)
...     if not result.ok:
...         print(result.failure, result.message)

See :class:`Sandbox`, :class:`RunResult`, :class:`FailureKind` and ``docs/sandbox.md``.
"""

from personaevo.sandbox._child import LLMError
from personaevo.sandbox._leases import sweep_abandoned_directories
from personaevo.sandbox.models import (
    DEFAULT_CPU_MS_PER_PERSONA,
    DEFAULT_WALL_SECONDS,
    FailureKind,
    Isolation,
    Job,
    RunResult,
    SandboxLimits,
    Validator,
)
from personaevo.sandbox.pool import DEFAULT_PRELOAD, DEFAULT_UID_BASE, Sandbox

__all__ = [
    "DEFAULT_CPU_MS_PER_PERSONA",
    "DEFAULT_PRELOAD",
    "DEFAULT_UID_BASE",
    "DEFAULT_WALL_SECONDS",
    "FailureKind",
    "Isolation",
    "Job",
    "LLMError",
    "RunResult",
    "Sandbox",
    "SandboxLimits",
    "Validator",
    "sweep_abandoned_directories",
]
