"""Test hooks for fault injection: dying with ``kill -9`` at a named point of a run, and
a log of the evaluations that finished, to count them across kills.

With ``PERSONAEVO_TEST_KILL_AT=POINT`` in the environment, :func:`crash_point` called
with ``POINT`` sends ``SIGKILL`` to the whole process group (the driver, and the local
Ray cluster it started), as an operator's ``kill -9`` of the job would. Points are
``checkpoint:GENERATION:STAGE``, with the stages of
:meth:`~personaevo.evolution.store.RunDirectory.checkpoint` (``evaluations``,
``logbook``, ``front``, ``previous``, ``checkpoint``). With
``PERSONAEVO_TEST_EVALUATION_LOG=FILE``, each evaluation actor appends the hash of every
program it finished evaluating to FILE. Without the variables nothing happens.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "PERSONAEVO_TEST_KILL_AT"
EVALUATION_LOG_ENV = "PERSONAEVO_TEST_EVALUATION_LOG"


def crash_point(point: str) -> None:
    """Die here with ``SIGKILL`` if ``$PERSONAEVO_TEST_KILL_AT`` names ``point``."""
    if os.environ.get(KILL_AT_ENV) != point:
        return
    try:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    finally:  # not a group leader's group we may signal: at least this process
        os.kill(os.getpid(), signal.SIGKILL)


def log_finished_evaluation(key: str) -> None:
    """Append ``key`` to ``$PERSONAEVO_TEST_EVALUATION_LOG`` when it is set."""
    path = os.environ.get(EVALUATION_LOG_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
