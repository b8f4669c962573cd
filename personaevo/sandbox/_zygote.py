"""The zygote: one per sandbox worker, a pre-imported process that forks one child per program.

Started by the host as ``python -s -c <bootstrap> <fd> <config-json>`` with a clean
environment. As root (or with unprivileged user namespaces) it first enters new PID,
network, mount, IPC and UTS namespaces and forks: the forked process is PID 1 of the new
PID namespace and serves jobs; the original just waits for it. Then it imports the
preload list (numpy, scipy, the project), makes the filesystem read-only apart from a
private tmpfs for working directories, freezes the GC and says hello.

Per job it receives (pickled job, stdout/stderr/result pipe ends, LM socket), creates a
working directory, forks the child (see ``_child``), reports its pid, waits for it to exit
or for a KILL from the host, kills everything the program left behind, deletes the
working directory and reports the exit status and resource use.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import pickle
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from personaevo.sandbox import _linux, _proto, _rootfs
from personaevo.sandbox._child import ChildContext, run_child
from personaevo.sandbox._seccomp import CompiledFilter, SyscallFilter


@dataclass
class _State:
    sock: socket.socket
    reader: _proto.FrameReader
    child: ChildContext
    job_root: str
    remove_job_root: bool
    hello: dict[str, Any] = field(default_factory=dict)


def _setup(cfg: dict[str, Any], sock: socket.socket) -> _State:
    ns = _linux.Namespaces()
    if cfg["isolation"] == "auto":
        ns = _linux.enter_namespaces()
    notes = list(ns.notes)
    if ns.pid:
        pid = os.fork()
        if pid:  # the original process: wait for PID 1 of the namespace, then follow it
            sock.close()
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        _linux.prctl(_linux.PR_SET_CHILD_SUBREAPER, 1)  # orphans of programs come back to us
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        fh.write("1000")  # under memory pressure, sandboxed processes die before the host
    if ns.network:
        with contextlib.suppress(OSError):
            socket.sethostname("personaevo-sandbox")

    preload_errors = []
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            preload_errors.append(f"{name}: {type(exc).__name__}: {exc}")

    in_pid_ns = ns.pid and os.getpid() == 1
    mount_ok = False
    job_root = os.path.join(cfg["base_dir"], f"worker-{cfg['slot']}")
    expose = _rootfs.exposed_paths(os.path.join(cfg["repo_root"], "personaevo"))
    if ns.mount and os.readlink("/proc/self/ns/mnt") != cfg["host_mount_ns"]:
        staging = os.path.join(cfg["base_dir"], f"root-{cfg['slot']}")
        try:
            root, more = _rootfs.enter_allow_listed_root(
                staging, expose, int(cfg["workdir_mb"]), in_pid_ns
            )
            notes += more
            job_root, mount_ok = root, True
        except OSError as exc:
            notes.append(f"filesystem isolation failed: {exc}")
    uid = cfg["uid"] if os.geteuid() == 0 and not ns.user and cfg["uid"] is not None else None
    blocked = [p for p in expose if _linux.blocking_ancestor(p)]
    if uid is not None and blocked:
        notes.append(f"not dropping to uid {uid}: it could not read {blocked[0]}")
        uid = None
    if not mount_ok:
        os.makedirs(job_root, exist_ok=True)
        os.chmod(job_root, 0o711 if uid is not None else 0o700)
    if uid is None and cfg["isolation"] == "auto":
        notes.append("programs run under the host's uid (no root): RLIMIT_NPROC not applied")

    syscall_filter = None
    if cfg["isolation"] == "auto":
        syscall_filter, note = _syscall_filter()
        if note:
            notes.append(note)

    gc.collect()
    gc.freeze()  # children then do not dirty the shared pages of pre-imported objects
    state = _State(
        sock=sock,
        reader=_proto.FrameReader(),
        child=ChildContext(
            uid=uid,
            in_pid_namespace=in_pid_ns,
            repo_root=cfg["repo_root"],
            syscall_filter=syscall_filter,
        ),
        job_root=job_root,
        remove_job_root=not mount_ok,
    )
    state.hello = {
        "isolation": {
            "network": ns.network,
            "pid": in_pid_ns,
            "mount": mount_ok,
            "ipc": ns.ipc,
            "user_namespace": ns.user,
            "uid": uid,
            "syscall_filter": syscall_filter is not None,
            "notes": notes,
        },
        "preload_errors": preload_errors,
    }
    return state


def _syscall_filter() -> tuple[CompiledFilter | None, str]:
    """The compiled syscall filter, checked in a throw-away child: the kernel must accept
    it and refuse what it refuses. (None, why) when libseccomp or the kernel will not."""
    try:
        compiled = SyscallFilter().compile()
    except OSError as exc:
        return None, f"no syscall filter: {exc}"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
            compiled.install()
            try:
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
                code = 2  # installed but not enforced
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = "not enforced" if code == 2 else "refused by the kernel"
        return None, f"no syscall filter: seccomp {why} (probe exit {code})"
    return compiled, ""


def _children() -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as fh:
                kids.extend(int(p) for p in fh.read().split())
        return kids
    except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan every process
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                        stat = fh.read()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    kids.append(int(entry))
        return kids


def _reap_all(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill(pid: int, state: _State) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    if state.child.in_pid_namespace and os.getpid() == 1:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # PID 1: every other process of the namespace


def _sweep(pid: int, state: _State) -> None:
    """Kill and reap every process the program left behind."""
    if state.child.in_pid_namespace and os.getpid() == 1:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # atomic with respect to fork
        _reap_all(block=True)
        return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(10_000):  # subreaper: escaped descendants end up as our children
        _reap_all(block=False)
        kids = _children()
        if not kids:
            return
        for kid in kids:
            with contextlib.suppress(OSError):
                os.killpg(kid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
        time.sleep(0.0005)


def _wait(pid: int, state: _State) -> tuple[int, Any, bool, bool]:
    """Wait for the child, honouring KILL frames. Returns (status, rusage, killed, host_gone)."""
    killed = host_gone = False
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            watch = [] if host_gone else [state.sock]
            if pidfd is not None:
                watch.append(pidfd)
            ready, _, _ = select.select(watch, [], [], 0.005 if pidfd is None else None)
            if state.sock in ready:
                if not state.reader.recv(state.sock):
                    host_gone = killed = True
                    _kill(pid, state)
                elif any(tag == _proto.KILL for tag, _, _ in state.reader.frames()):
                    killed = True
                    _kill(pid, state)
            if pidfd is None or pidfd in ready:
                wpid, status, rusage = os.wait4(pid, os.WNOHANG)
                if wpid == pid:
                    return status, rusage, killed, host_gone
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _run_job(state: _State, payload: bytes, fds: list[int]) -> bool:
    """Run one job; False when the host has gone away."""
    job = pickle.loads(payload)
    job["zygote_pid"] = os.getpid()
    workdir = tempfile.mkdtemp(prefix="job-", dir=state.job_root)
    if state.child.uid is not None:
        os.chown(workdir, state.child.uid, state.child.uid)
    try:
        pid = os.fork()
    except OSError as exc:  # e.g. out of memory: the sandbox's fault, not the program's
        for fd in fds:
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            done = {"seq": job["seq"], "error": f"fork failed: {exc}"}
            _proto.send_json(state.sock, _proto.DONE, done)
        return True
    if pid == 0:
        run_child(job, fds, workdir, state.child)
    for fd in fds:
        os.close(fd)
    try:
        _proto.send_json(state.sock, _proto.STARTED, {"seq": job["seq"], "pid": pid})
    except OSError:
        _kill(pid, state)
    status, rusage, killed, host_gone = _wait(pid, state)
    _sweep(pid, state)
    shutil.rmtree(workdir, ignore_errors=True)
    if host_gone:
        return False
    done = {
        "seq": job["seq"],
        "status": status,
        "maxrss_kb": rusage.ru_maxrss,
        "cpu": rusage.ru_utime + rusage.ru_stime,
        "killed": killed,
    }
    try:
        _proto.send_json(state.sock, _proto.DONE, done)
    except OSError:
        return False
    return True


def serve(state: _State) -> None:
    """Serve jobs until the host closes the control socket."""
    while True:
        frame = _proto.read_frame(state.sock, state.reader)
        if frame is None:
            return
        tag, payload, fds = frame
        if tag == _proto.JOB and not _run_job(state, payload, fds):
            return
        # a KILL arriving here is stale: its job already finished


def main() -> None:
    """Zygote entry point (see the module docstring)."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    cfg = json.loads(sys.argv[2])
    try:
        state = _setup(cfg, sock)
        _proto.send_json(sock, _proto.HELLO, state.hello)
    except BaseException:
        with contextlib.suppress(OSError):
            _proto.send_frame(sock, _proto.FAILED, traceback.format_exc().encode())
        os._exit(1)
    try:
        serve(state)
    finally:
        if state.remove_job_root:
            shutil.rmtree(state.job_root, ignore_errors=True)
        os._exit(0)
