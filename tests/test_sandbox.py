"""Sandbox tests: normal runs, failure kinds, hostile programs, pool recovery.

Two module-wide pools are shared: ``sandbox`` (full isolation where the platform allows:
namespaces + unprivileged uid when root) and ``plain`` (``isolation="none"``: rlimits,
session kill and working directory only). After each hostile program the pool must still
run a normal program.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from personaevo.programs import GeneratorProgram, ast_hash, load_program
from personaevo.sandbox import FailureKind, Job, RunResult, Sandbox, SandboxLimits

HOSTILE = Path(__file__).parent / "hostile"
SECRET_VAR = "PERSONAEVO_TEST_SECRET"
os.environ[SECRET_VAR] = "must-not-leak"  # set before any pool starts

LIMITS = SandboxLimits(
    wall_seconds=2.0,
    cpu_seconds=2.0,
    memory_mb=1024,
    file_size_mb=4,
    output_mb=4,
    stdio_bytes=4096,
    max_processes=32,
)
SPACE = {"axes": ["age", "mood"]}  # an opaque, picklable stand-in for a TraitSpace

GOOD = '''
"""A well-behaved generator."""
import numpy as np


def generate(space, n, rng, llm=None):
    print("generating", n)
    ages = rng.integers(18, 90, size=n)
    return [
        {"id": f"p{i}", "traits": {"age": ages[i], "mood": float(rng.random()),
                                   "axes": list(space["axes"])}}
        for i in range(n)
    ]
'''


def hostile(name: str) -> GeneratorProgram:
    """A hostile fixture program, loaded without the static contract check."""
    return load_program(HOSTILE / f"{name}.py", check=False)


def assert_usable(sb: Sandbox) -> None:
    result = sb.run(GOOD, SPACE, 5, seed=1)
    assert result.ok, result.message
    assert [p["id"] for p in result.personas] == [f"p{i}" for i in range(5)]


def descendants(root: int) -> set[int]:
    """All live descendants of ``root`` (host pids), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def assert_no_leftovers(sb: Sandbox) -> None:
    """Idle workers hold only the zygote (PID 1 of its namespace, or nothing below it)."""
    expected = 1 if sb.isolation.pid else 0
    for pid in sb.worker_pids():
        assert pid is not None
        assert len(descendants(pid)) == expected


def processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            line = next(x for x in status.splitlines() if x.startswith("Uid:"))
            if int(line.split()[1]) == uid:
                pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    with Sandbox(workers=2, limits=LIMITS) as sb:
        yield sb


@pytest.fixture(scope="module")
def plain() -> Sandbox:
    with Sandbox(workers=1, limits=LIMITS, isolation="none") as sb:
        yield sb


@pytest.fixture(params=["isolated", "plain"])
def any_sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue("sandbox" if request.param == "isolated" else "plain")


# --------------------------------------------------------------------------- normal runs


def test_good_program_runs(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(GOOD, SPACE, 4, seed=7)
    assert result.ok and result.failure is None
    assert len(result.personas) == 4 and result.n_invalid == 0
    assert all(isinstance(p["traits"]["age"], int) for p in result.personas)  # numpy int64
    assert result.personas[0]["traits"]["axes"] == ["age", "mood"]
    assert result.stdout == "generating 4\n"
    assert result.program_hash == ast_hash(GOOD)
    assert result.program_seconds is not None
    assert 0 < result.program_seconds < result.wall_seconds
    assert result.exit_code == 0 and result.signal is None


def test_same_seed_same_personas(sandbox: Sandbox) -> None:
    a, b, c = (sandbox.run(GOOD, SPACE, 20, seed=s) for s in (3, 3, 4))
    assert a.personas == b.personas
    assert a.personas != c.personas


def test_isolation_is_reported(sandbox: Sandbox, plain: Sandbox) -> None:
    result = sandbox.run(GOOD, SPACE, 1, seed=0)
    assert result.network_isolated == sandbox.network_isolated == result.isolation.network
    assert plain.isolation.network is False and plain.isolation.uid is None
    if os.geteuid() == 0:
        assert sandbox.isolation.network and sandbox.isolation.pid and sandbox.isolation.mount
        assert sandbox.isolation.uid is not None


def test_contract_failures_are_results_not_exceptions(sandbox: Sandbox) -> None:
    bad_syntax = sandbox.run("def generate(space, n, rng, llm=None)\n    return []\n", SPACE, 1, 0)
    assert bad_syntax.failure is FailureKind.SYNTAX_ERROR and bad_syntax.worker is None
    assert bad_syntax.program_hash == ""
    bad_import = "import os\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    violation = sandbox.run(bad_import, SPACE, 1, 0)
    assert violation.failure is FailureKind.CONTRACT_VIOLATION
    assert any("line 1" in p and "'os'" in p for p in violation.problems)
    assert violation.program_hash == ast_hash(bad_import)


def test_missing_import_is_refused_before_running(sandbox: Sandbox) -> None:
    source = "import no_such_module_xyz\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    result = sandbox.run(source, SPACE, 1, 0)
    assert result.failure is FailureKind.CONTRACT_VIOLATION
    assert "no_such_module_xyz" in result.message


def test_missing_module_at_run_time(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("runtime_missing_import"), SPACE, 1, 0)
    assert result.failure is FailureKind.EXCEPTION
    assert "ModuleNotFoundError" in result.message
    source = (HOSTILE / "runtime_missing_import.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if text.startswith("import scipy"))
    assert f'File "<program>", line {line}, in <module>' in result.traceback


def test_bad_arguments_raise(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.run(GOOD, SPACE, -1, 0)
    with pytest.raises(ValueError):
        sandbox.run(GOOD, SPACE, 1, -5)


def test_unchecked_program_problems_are_reported(sandbox: Sandbox) -> None:
    result = sandbox.run(hostile("kill_host"), {"host_pid": 999_999_999}, 1, 0)
    assert any("__import__" in p for p in result.problems)


# --------------------------------------------------------------------------- output checks


def test_structurally_invalid_personas_are_dropped(sandbox: Sandbox) -> None:
    source = """
def generate(space, n, rng, llm=None):
    return [
        {"id": "a", "traits": {"x": 1}},
        {"traits": {"x": 2}},
        {"id": "b", "traits": [1, 2]},
        {"id": "a", "traits": {"x": 3}},
        {"id": True, "traits": {}},
        "not a dict",
        {"id": 7, "traits": {}, "description": "fine"},
    ]
"""
    result = sandbox.run(source, SPACE, 7, 0)
    assert result.ok
    assert [p["id"] for p in result.personas] == ["a", 7]
    assert result.n_invalid == 5
    joined = "\n".join(result.problems)
    for needle in ("missing 'id'", "'traits' must be a dict", "duplicate id", "not a dict"):
        assert needle in joined


def test_not_a_list_or_empty_is_invalid(sandbox: Sandbox) -> None:
    as_dict = "def generate(space, n, rng, llm=None):\n    return {'id': 1, 'traits': {}}\n"
    result = sandbox.run(as_dict, SPACE, 1, 0)
    assert result.failure is FailureKind.INVALID_PERSONAS and "dict" in result.message
    empty = "def generate(space, n, rng, llm=None):\n    return []\n"
    assert sandbox.run(empty, SPACE, 3, 0).failure is FailureKind.INVALID_PERSONAS
    assert sandbox.run(empty, SPACE, 0, 0).ok


def test_validator_marks_personas_invalid(sandbox: Sandbox) -> None:
    def young_only(personas: list[dict]) -> list[str]:
        (persona,) = personas
        return [] if persona["traits"]["age"] < 50 else ["too old"]

    result = sandbox.run(GOOD, SPACE, 30, seed=2, validator=young_only)
    assert result.ok and 0 < result.n_invalid < 30
    assert all(p["traits"]["age"] < 50 for p in result.personas)
    assert len(result.personas) + result.n_invalid == 30
    assert any("too old" in p for p in result.problems)
    reject_all = sandbox.run(GOOD, SPACE, 5, seed=2, validator=lambda ps: ["nope"])
    assert reject_all.failure is FailureKind.INVALID_PERSONAS
    assert reject_all.personas == []


@pytest.mark.parametrize(
    ("name", "space", "needle"),
    [
        ("non_json", SPACE, "not JSON serializable"),
        ("nan_traits", {}, "not JSON compliant"),
        ("nan_traits", {"inf": True}, "not JSON compliant"),
    ],
)
def test_non_json_values_are_invalid(sandbox: Sandbox, name: str, space: dict, needle: str) -> None:
    result = sandbox.run(hostile(name), space, 2, 0)
    assert result.failure is FailureKind.INVALID_PERSONAS
    assert needle in result.message
    assert_usable(sandbox)


def test_output_too_large(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("output_flood"), SPACE, 1, 0)
    assert result.failure is FailureKind.OUTPUT_TOO_LARGE
    assert_usable(any_sandbox)


def test_result_channel_flood_is_cut_off(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("result_channel_flood"), SPACE, 1, 0)
    assert result.failure is FailureKind.OUTPUT_TOO_LARGE
    assert result.wall_seconds < LIMITS.wall_seconds  # killed on the spot, not at the deadline
    assert_usable(any_sandbox)


def test_print_flood_is_truncated_and_bounded(any_sandbox: Sandbox) -> None:
    start = time.monotonic()
    result = any_sandbox.run(hostile("print_flood"), SPACE, 1, 0)
    assert time.monotonic() - start < 10
    assert result.ok, result.message
    assert result.stdout_bytes == 100 * 1_000_000
    assert result.stderr_bytes == 1_000_001
    assert result.stdout.startswith("x" * 4096)
    assert "truncated" in result.stdout and len(result.stdout) < 4096 + 100
    assert_usable(any_sandbox)


# --------------------------------------------------------------------------- hostile programs


def test_infinite_loop_times_out(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("infinite_loop"), SPACE, 1, 0)
    assert result.failure is FailureKind.TIMEOUT
    assert "wall-clock" in result.message
    assert LIMITS.wall_seconds <= result.wall_seconds < LIMITS.wall_seconds + 3
    assert_usable(any_sandbox)


def test_cpu_limit(sandbox: Sandbox) -> None:
    limits = LIMITS.model_copy(update={"cpu_seconds": 1.0, "wall_seconds": 10.0})
    result = sandbox.run(hostile("cpu_burn"), SPACE, 1, 0, limits=limits)
    assert result.failure is FailureKind.TIMEOUT
    assert "CPU" in result.message and result.signal == "SIGXCPU"
    assert result.wall_seconds < 5
    assert_usable(sandbox)


@pytest.mark.parametrize("name", ["huge_alloc", "huge_numpy_alloc", "grow_until_oom"])
def test_memory_limit(any_sandbox: Sandbox, name: str) -> None:
    # Touching 1 GB takes about 2 s of CPU on a 2-core VM (page faults), so the time
    # limits are raised here: this test is about the memory limit, not the clock.
    roomy = LIMITS.model_copy(update={"wall_seconds": 8.0, "cpu_seconds": 8.0})
    result = any_sandbox.run(hostile(name), SPACE, 1, 0, limits=roomy)
    assert result.failure is FailureKind.MEMORY, result.message
    assert result.wall_seconds < 10
    assert_usable(any_sandbox)


def test_fork_tree_is_killed(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("fork_tree"), SPACE, 1, 0)
    assert result.failure is FailureKind.TIMEOUT
    assert_no_leftovers(any_sandbox)
    assert_usable(any_sandbox)


def test_fork_bomb_is_bounded(sandbox: Sandbox) -> None:
    uid = sandbox.isolation.uid
    if uid is None:
        pytest.skip("RLIMIT_NPROC needs a dedicated uid (run as root)")
    start = time.monotonic()
    result = sandbox.run(hostile("fork_bomb"), SPACE, 1, 0)
    assert result.failure is FailureKind.TIMEOUT
    assert time.monotonic() - start < LIMITS.wall_seconds + 5
    assert all(processes_of_uid(u) == [] for u in sandbox.worker_uids() if u is not None)
    assert_no_leftovers(sandbox)
    assert_usable(sandbox)


FORKS_AND_WAITS = """
def generate(space, n, rng, llm=None):
    os = __import__("os")
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:  # hold a process slot until the parent is done
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    return [{"id": 0, "traits": {"forked": len(pids)}}]
"""


def test_a_fork_bomb_does_not_starve_a_concurrent_sandbox() -> None:
    """Two sandboxes at once (as two Ray actors or two runs would be): each worker has a
    uid of its own, so one's fork bomb leaves the other its whole process quota."""
    limits = LIMITS.model_copy(update={"wall_seconds": 4.0, "cpu_seconds": 4.0})
    with Sandbox(workers=1, limits=limits) as bombed, Sandbox(workers=1, limits=limits) as other:
        uids = bombed.worker_uids() + other.worker_uids()
        if None in uids:
            pytest.skip("RLIMIT_NPROC needs a dedicated uid (run as root)")
        assert uids[0] != uids[1]
        bomb = bombed.submit(hostile("fork_bomb"), SPACE, 1, 0)
        deadline = time.monotonic() + 3
        while len(processes_of_uid(uids[0])) < LIMITS.max_processes - 2:
            assert time.monotonic() < deadline, "the fork bomb did not fill its quota"
            time.sleep(0.02)
        wanted = LIMITS.max_processes - 4
        neighbour = other.run(load_program(FORKS_AND_WAITS, check=False), SPACE, wanted, 0)
        assert neighbour.ok, neighbour.message
        assert neighbour.personas[0]["traits"]["forked"] == wanted
        assert bomb.result().failure is FailureKind.TIMEOUT
        assert processes_of_uid(uids[0]) == [] and processes_of_uid(uids[1]) == []


def test_escaped_grandchild_is_killed(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("escape_session"), SPACE, 1, 0)
    assert result.ok, result.message
    assert result.personas[0]["traits"]["grandchild"] > 0
    assert_no_leftovers(any_sandbox)


def test_writing_outside_the_working_directory_fails(sandbox: Sandbox, tmp_path: Path) -> None:
    if not (sandbox.isolation.mount or sandbox.isolation.uid is not None):
        pytest.skip("no filesystem confinement on this platform")
    tag = uuid.uuid4().hex
    targets = [
        str(tmp_path / "absolute.txt"),
        str(Path(__file__).parent / f"escape-{tag}.txt"),
        f"/tmp/escape-{tag}.txt",
        f"/dev/shm/escape-{tag}.txt",
        f"../escape-{tag}.txt",
        f"../../escape-{tag}.txt",
    ]
    result = sandbox.run(hostile("write_outside"), {"paths": targets}, len(targets), 0)
    assert result.ok, result.message
    outcomes = {p["traits"]["path"]: p["traits"]["outcome"] for p in result.personas}
    assert all(v != "written" for v in outcomes.values()), outcomes
    for path in targets[:4]:
        assert not Path(path).exists()
    # os.walk skips directories that vanish meanwhile (other sandboxes come and go in /tmp)
    escaped = [d for d, _, files in os.walk("/tmp") if f"escape-{tag}.txt" in files]
    assert not escaped
    assert_usable(sandbox)


def test_plain_sandbox_lets_writes_through(plain: Sandbox, tmp_path: Path) -> None:
    """Control for the test above: without confinement the same program does write."""
    target = tmp_path / "written.txt"
    result = plain.run(hostile("write_outside"), {"paths": [str(target)]}, 1, 0)
    assert result.personas[0]["traits"]["outcome"] == "written"
    assert target.read_text() == "pwned"


def test_kill_parent(any_sandbox: Sandbox) -> None:
    before = any_sandbox.restarts
    result = any_sandbox.run(hostile("kill_parent"), SPACE, 1, 0)
    if any_sandbox.isolation.uid is not None:
        assert result.failure is FailureKind.EXCEPTION
        assert "PermissionError" in result.message
        assert any_sandbox.restarts == before
    else:
        assert result.failure is FailureKind.CRASHED
        assert "worker died" in result.message
    assert_usable(any_sandbox)
    assert_no_leftovers(any_sandbox)


def test_kill_host(sandbox: Sandbox) -> None:
    if not sandbox.isolation.pid:
        pytest.skip("without a PID namespace a same-uid program can signal the host")
    result = sandbox.run(hostile("kill_host"), {"host_pid": os.getpid()}, 1, 0)
    assert result.ok, result.message
    assert result.personas[0]["traits"]["host"] in {"ProcessLookupError", "PermissionError"}
    assert result.personas[0]["traits"]["everyone"] != "sent"
    assert_usable(sandbox)


def test_killed_worker_is_restarted(any_sandbox: Sandbox) -> None:
    before = any_sandbox.restarts
    for pid in any_sandbox.worker_pids():
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
    time.sleep(0.3)  # let them die: a zygote dying mid-job is (rightly) a crashed run
    results = any_sandbox.map([Job(GOOD, SPACE, 2, seed) for seed in range(3)])
    assert all(r.ok for r in results), [r.message for r in results]
    assert any_sandbox.restarts >= before + len(any_sandbox.worker_pids())


def test_sys_exit(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("sys_exit"), SPACE, 1, 0)
    assert result.failure is FailureKind.EXITED
    assert "sys.exit(3)" in result.message
    assert_usable(any_sandbox)


def test_os_exit(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("os_exit"), SPACE, 1, 0)
    assert result.failure is FailureKind.CRASHED
    assert result.exit_code == 0 and "without producing output" in result.message
    assert_usable(any_sandbox)


def test_forged_result_is_not_trusted(sandbox: Sandbox) -> None:
    result = sandbox.run(hostile("forged_result"), SPACE, 1, 0)
    assert result.failure is FailureKind.TIMEOUT
    assert result.personas == []
    assert_usable(sandbox)


def test_deep_recursion(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("deep_recursion"), SPACE, 1, 0)
    assert result.failure is FailureKind.EXCEPTION
    assert "RecursionError" in result.message
    lines = result.traceback.splitlines()
    assert len(lines) <= LIMITS.traceback_lines
    assert lines[-1].startswith("RecursionError") and "<program>" in result.traceback
    assert "/work/" not in result.traceback and "/root/" not in result.traceback


def test_c_stack_recursion_is_bounded(sandbox: Sandbox) -> None:
    result = sandbox.run(hostile("c_stack_recursion"), SPACE, 1, 0)
    assert result.failure in {FailureKind.CRASHED, FailureKind.EXCEPTION, FailureKind.MEMORY}
    assert result.wall_seconds < LIMITS.wall_seconds + 3
    assert_usable(sandbox)


def test_file_size_limit(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(hostile("big_file"), SPACE, 1, 0)
    assert result.failure is FailureKind.EXCEPTION
    assert "File too large" in result.message
    assert_usable(any_sandbox)


def test_network_is_blocked(sandbox: Sandbox, plain: Sandbox) -> None:
    if not sandbox.network_isolated:
        pytest.skip("network namespaces unavailable here")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        space = {"port": listener.getsockname()[1]}
        blocked = sandbox.run(hostile("network_connect"), space, 1, 0)
        assert blocked.failure is FailureKind.EXCEPTION
        # the syscall filter refuses the inet socket; the empty network namespace behind it
        # would answer the connect with ENETUNREACH
        expected = "operation not permitted" if sandbox.isolation.syscall_filter else "unreachable"
        assert expected in blocked.message.lower()
        with pytest.raises(BlockingIOError):
            listener.accept()
        # control: without isolation the same program reaches the listener
        reached = plain.run(hostile("network_connect"), space, 1, 0)
        assert reached.ok, reached.message
        conn, _ = listener.accept()
        conn.close()


def test_environment_and_working_directory(any_sandbox: Sandbox) -> None:
    first = any_sandbox.run(hostile("read_environment"), SPACE, 1, 0)
    second = any_sandbox.run(hostile("read_environment"), SPACE, 1, 0)
    assert first.ok and second.ok, first.message + second.message
    traits = first.personas[0]["traits"]
    env = traits["env"]
    assert SECRET_VAR not in env
    assert env["HOME"] == env["TMPDIR"] == traits["cwd"]
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONHASHSEED"] == "0"
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "PYTHONHASHSEED",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "HOME",
        "TMPDIR",
        "PWD",
    }
    assert traits["listing"] == second.personas[0]["traits"]["listing"] == ["scratch.txt"]
    expected_uid = first.isolation.uid  # per worker
    assert traits["uid"] == (os.getuid() if expected_uid is None else expected_uid)
    if not any_sandbox.isolation.mount:  # the host can see the directory: it must be gone
        assert not Path(traits["cwd"]).exists()


# --------------------------------------------------------------------------- LM proxy


class FakeLLM:
    """A host-side LM client; it must never be pickled into the sandbox."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._secret = "api-key"

    def complete(self, prompt: str, temperature: float = 0.0) -> str:
        self.calls.append((prompt, temperature))
        return f"a persona for {prompt} at t={temperature}"

    def fail(self) -> str:
        raise RuntimeError("rate limited")

    def __reduce__(self) -> tuple:
        raise TypeError("FakeLLM must stay on the host")


LLM_PROGRAM = """
def generate(space, n, rng, llm=None):
    out = []
    for i in range(n):
        out.append({"id": i, "traits": {"i": i},
                    "description": llm.complete(f"p{i}", temperature=0.5)})
    try:
        llm._secret
        hidden = False
    except AttributeError:
        hidden = True
    try:
        llm.fail()
        error = ""
    except RuntimeError as exc:
        error = str(exc)
    out[0]["traits"]["hidden"] = hidden
    out[0]["traits"]["error"] = error
    return out
"""


def test_llm_calls_are_proxied_to_the_host(sandbox: Sandbox) -> None:
    llm = FakeLLM()
    result = sandbox.run(LLM_PROGRAM, SPACE, 3, 0, llm=llm)
    assert result.ok, result.message + result.traceback
    assert [p["description"] for p in result.personas] == [
        f"a persona for p{i} at t=0.5" for i in range(3)
    ]
    assert llm.calls == [(f"p{i}", 0.5) for i in range(3)]
    assert result.personas[0]["traits"]["hidden"] is True
    assert "rate limited" in result.personas[0]["traits"]["error"]


def test_llm_call_limit(sandbox: Sandbox) -> None:
    llm = FakeLLM()
    limits = LIMITS.model_copy(update={"max_llm_calls": 2})
    result = sandbox.run(LLM_PROGRAM, SPACE, 3, 0, llm=llm, limits=limits)
    assert result.failure is FailureKind.EXCEPTION
    assert "more than 2 LM calls" in result.message
    assert len(llm.calls) == 2


# --------------------------------------------------------------------------- pool


SLEEPER = load_program(
    "def generate(space, n, rng, llm=None):\n"
    "    __import__('time').sleep(0.6)\n"
    "    return [{'id': space['k'], 'traits': {}}]\n",
    check=False,
)


def test_map_runs_in_parallel_and_keeps_order(sandbox: Sandbox) -> None:
    jobs = [Job(SLEEPER, {"k": k}, 1, k) for k in range(4)]
    start = time.monotonic()
    results = sandbox.map(jobs)
    elapsed = time.monotonic() - start
    assert [r.personas[0]["id"] for r in results] == [0, 1, 2, 3]
    assert elapsed < 4 * 0.6  # two workers: about 1.2 s
    assert {r.worker for r in results} == {0, 1}


def test_submit_returns_future(sandbox: Sandbox) -> None:
    future = sandbox.submit(GOOD, SPACE, 2, 0)
    result = future.result(timeout=30)
    assert isinstance(result, RunResult) and result.ok


def test_closed_sandbox_refuses_work() -> None:
    sb = Sandbox(workers=1, limits=LIMITS, isolation="none", preload=("numpy",))
    pids = sb.worker_pids()
    assert sb.run(GOOD, SPACE, 1, 0).ok
    sb.close()
    with pytest.raises(RuntimeError):
        sb.run(GOOD, SPACE, 1, 0)
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_workdir_tmpfs_never_hides_the_project():
    """A checkout under /tmp (CI clones into temporary folders) must stay visible."""
    from personaevo.sandbox._rootfs import workdir_root

    assert workdir_root(["/usr/lib/python3", "/work/main"]) == "/tmp"
    root = workdir_root(["/tmp/tmp.abc/p/.venv", "/usr/lib"])
    assert root != "/tmp" and not "/tmp/tmp.abc/p".startswith(root + "/")
