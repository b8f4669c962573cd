"""The syscall filter: what a generator never needs is refused (``EPERM``), and everything
programs do need (threads, forks, numpy, a seeded Sobol engine) still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from personaevo.programs import load_program
from personaevo.sandbox import Sandbox, SandboxLimits

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = SandboxLimits(wall_seconds=20, cpu_seconds=20)
KERNEL_CALLS = (
    "ptrace",
    "unshare_user",
    "unshare_net",
    "mount",
    "setns",
    "keyctl",
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "userfaultfd",
    "clone_newuser",
)


def _surface(sandbox: Sandbox) -> dict:
    result = sandbox.run(load_program(HOSTILE / "kernel_surface.py", check=False), None, 1, 0)
    assert result.ok, result.message + result.traceback
    return result.personas[0]["traits"]


def test_kernel_surface_is_refused() -> None:
    with Sandbox(workers=1, limits=LIMITS) as sandbox:
        if not sandbox.isolation.syscall_filter:
            refused = [n for n in sandbox.isolation.notes if "refused by the kernel" in n]
            if not refused:
                pytest.fail(f"no syscall filter: {sandbox.isolation.notes}")
            pytest.skip(refused[0])
        seen = _surface(sandbox)
    assert {c: seen[c] for c in KERNEL_CALLS} == dict.fromkeys(KERNEL_CALLS, "EPERM")
    assert seen["socket_inet"] == seen["socket_inet6"] == "PermissionError"


def test_without_isolation_the_same_calls_go_through() -> None:
    """Control: the outcomes above are the filter's doing, not the kernel's defaults."""
    with Sandbox(workers=1, limits=LIMITS, isolation="none") as plain:
        assert not plain.isolation.syscall_filter
        seen = _surface(plain)
    assert seen["ptrace"] == "allowed" and seen["socket_inet"] == "allowed"
    assert seen["urandom"] == "allowed"


THREADS_AND_FORKS = """
import numpy as np

def generate(space, n, rng, llm=None):
    os = __import__("os")
    threading = __import__("threading")
    box = []
    worker = threading.Thread(target=lambda: box.append(float(np.linalg.norm(np.ones(4)))))
    worker.start()
    worker.join()
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    sobol = __import__("scipy.stats", fromlist=["qmc"]).qmc.Sobol(d=2, seed=rng)  # copies rng
    draw = float(sobol.random(1)[0][0])
    return [{"id": 0, "traits": {"thread": box[0], "child": code, "draw": draw}}]
"""


def test_threads_forks_and_numpy_still_work() -> None:
    with Sandbox(workers=1, limits=LIMITS) as sandbox:
        result = sandbox.run(load_program(THREADS_AND_FORKS, check=False), None, 1, 0)
    assert result.ok, result.message + result.traceback
    traits = result.personas[0]["traits"]
    assert traits["thread"] == 2.0 and traits["child"] == 7 and 0 <= traits["draw"] < 1
