"""Code that runs inside the forked, per-program child process.

The child confines itself (session, fds, working directory, environment, rlimits, uid),
runs the program, and writes one JSON document to fd 3. It never returns into the
zygote: every path ends in ``os._exit``. The host re-validates everything it reads.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import functools
import json
import linecache
import math
import os
import pickle
import random
import re
import resource
import signal
import socket
import struct
import sys
import sysconfig
import time
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from personaevo.sandbox import _linux
from personaevo.sandbox._seccomp import CompiledFilter

RESULT_FD = 3
RPC_FD = 4
PROGRAM_FILENAME = "<program>"
_RPC_HEADER = struct.Struct("!I")
_RPC_MAX = 16 << 20


@dataclass
class ChildContext:
    """Per-worker facts the zygote hands to every child it forks."""

    uid: int | None
    in_pid_namespace: bool
    repo_root: str
    syscall_filter: CompiledFilter | None = None


class LLMError(RuntimeError):
    """The host-side language model call failed (raised inside the program)."""


class LLMProxy:
    """Stands in for the host's LM client: public method calls are forwarded to the host.

    Arguments and results must be JSON values. ``proxy(...)`` calls the client itself.
    """

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(self._call, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("__call__", *args, **kwargs)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        request = {"method": method, "args": list(args), "kwargs": kwargs}
        data = json.dumps(request, allow_nan=False, default=_jsonable).encode()
        self._sock.sendall(_RPC_HEADER.pack(len(data)) + data)
        (size,) = _RPC_HEADER.unpack(self._recv_exact(_RPC_HEADER.size))
        if size > _RPC_MAX:
            raise LLMError("LM response too large")
        reply = json.loads(self._recv_exact(size))
        if not reply.get("ok"):
            raise LLMError(str(reply.get("error", "LM call failed")))
        return reply.get("result")

    def _recv_exact(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self._sock.recv(size - len(chunks))
            if not chunk:
                raise LLMError("LM channel closed by the host")
            chunks += chunk
        return bytes(chunks)


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` default: numpy scalars/arrays become plain values; nothing else."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# --------------------------------------------------------------------------- confinement


def _install_fds(fds: list[int]) -> None:
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]  # clear of the targets
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for target, fd in zip((1, 2, RESULT_FD, RPC_FD), high, strict=False):
        os.dup2(fd, target)
    keep = 1 + max(RESULT_FD, RPC_FD if len(fds) > 3 else RESULT_FD)
    os.closerange(keep, 1 << 16)


def _vm_size_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:  # cheaper than /proc/self/status
        return int(fh.read().split()[0]) * resource.getpagesize()


def _confine(job: dict[str, Any], fds: list[int], workdir: str, ctx: ChildContext) -> None:
    os.setsid()
    _install_fds(fds)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    out_opts = {"encoding": "utf-8", "errors": "backslashreplace", "closefd": False}
    sys.stdout = open(1, "w", **out_opts)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, **out_opts)  # noqa: SIM115
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes raise OSError(EFBIG)
    os.chdir(workdir)
    os.umask(0o077)
    env = {k: v for k, v in os.environ.items() if k in job["env_keep"]}
    os.environ.clear()
    os.environ.update(env, HOME=workdir, TMPDIR=workdir, PWD=workdir)

    limits = job["limits"]
    mb = 1 << 20
    cpu = max(1, math.ceil(limits["cpu_seconds"]))
    address_space = _vm_size_bytes() + int(limits["memory_mb"]) * mb
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    fsize = int(limits["file_size_mb"]) * mb
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if ctx.uid is not None:
        nproc = int(limits["max_processes"])
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    _linux.prctl(_linux.PR_SET_NO_NEW_PRIVS, 1)
    if ctx.uid is not None:
        os.setgroups([])
        os.setresgid(ctx.uid, ctx.uid, ctx.uid)
        os.setresuid(ctx.uid, ctx.uid, ctx.uid)
        if os.getuid() != ctx.uid or os.geteuid() != ctx.uid:
            raise RuntimeError("privilege drop did not take effect")
    _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    if os.getppid() != job["zygote_pid"]:  # the zygote died before we armed the signal
        raise RuntimeError("sandbox worker exited during start-up")
    if ctx.syscall_filter is not None:
        ctx.syscall_filter.install()  # last: the set-up above needs prctl and setuid


# --------------------------------------------------------------------------- running


def _scrub(text: str, workdir: str, repo_root: str) -> str:
    paths = sysconfig.get_paths()
    for prefix, label in (
        (paths.get("purelib", ""), "<site-packages>"),
        (paths.get("platlib", ""), "<site-packages>"),
        (paths.get("stdlib", ""), "<stdlib>"),
        (repo_root, "<personaevo>"),
        (workdir, "."),
    ):
        if prefix:
            text = text.replace(prefix.rstrip("/") + "/", label + "/")
    return re.sub(r'File "/(?:[^"/\n]+/)+([^"/\n]+)"', r'File ".../\1"', text)


def _format_exception(exc: BaseException, max_lines: int, workdir: str, repo_root: str) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # drop the runner's own frames
    try:
        lines = "".join(traceback.format_exception(type(exc), exc, tb)).splitlines()
    except Exception:  # formatting can fail (e.g. out of memory); keep the essentials
        lines = [f"{type(exc).__name__}: <unprintable>"]
    return _scrub("\n".join(lines[-max_lines:]), workdir, repo_root)


def _short(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _error(kind: str, message: str, tb: str = "", seconds: float | None = None) -> dict:
    return {
        "v": 1,
        "status": "error",
        "kind": kind,
        "message": message,
        "traceback": tb,
        "program_seconds": seconds,
    }


def _execute(job: dict[str, Any], workdir: str, ctx: ChildContext) -> dict[str, Any] | None:
    """Run the program; return the result document (None in a forked copy of the child)."""
    me = os.getpid()
    seed = int(job["seed"])
    rng = np.random.default_rng(seed)
    np.random.seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))  # legacy state
    random.seed(seed)
    space = pickle.loads(job["space"])
    llm = LLMProxy(RPC_FD) if job["has_llm"] else None
    source = job["source"]
    linecache.cache[PROGRAM_FILENAME] = (
        len(source),
        None,
        source.splitlines(True),
        PROGRAM_FILENAME,
    )
    max_lines = int(job["limits"]["traceback_lines"])
    start = time.perf_counter()
    try:
        code = compile(source, PROGRAM_FILENAME, "exec", dont_inherit=True)
        namespace: dict[str, Any] = {"__name__": "__persona_program__", "__builtins__": builtins}
        exec(code, namespace)
        generate = namespace.get("generate")
        if not callable(generate):
            return _error("contract_violation", "the module defines no callable 'generate'")
        personas = generate(space, int(job["n"]), rng, llm)
    except SyntaxError as exc:
        return None if os.getpid() != me else _error("syntax_error", _short(exc))
    except SystemExit as exc:
        if os.getpid() != me:
            return None
        return _error(
            "exited",
            f"program called sys.exit({exc.code!r})",
            _format_exception(exc, max_lines, workdir, ctx.repo_root),
            time.perf_counter() - start,
        )
    except MemoryError as exc:
        if os.getpid() != me:
            return None
        return _error(
            "memory",
            _short(exc) or "MemoryError",
            _format_exception(exc, max_lines, workdir, ctx.repo_root),
            time.perf_counter() - start,
        )
    except BaseException as exc:
        if os.getpid() != me:
            return None
        return _error(
            "exception",
            _short(exc),
            _format_exception(exc, max_lines, workdir, ctx.repo_root),
            time.perf_counter() - start,
        )
    seconds = time.perf_counter() - start
    if os.getpid() != me:
        return None  # a fork made by the program returned from generate: emit nothing
    if not isinstance(personas, list):
        msg = f"generate returned {type(personas).__name__}, not a list of persona dicts"
        return _error("invalid_personas", msg, seconds=seconds)
    return {"v": 1, "status": "ok", "personas": personas, "program_seconds": seconds}


def _serialise(doc: dict[str, Any], limit: int) -> bytes:
    try:
        text = json.dumps(doc, allow_nan=False, default=_jsonable, separators=(",", ":"))
    except MemoryError:
        text = json.dumps(_error("memory", "MemoryError while serialising the personas"))
    except (TypeError, ValueError, RecursionError) as exc:
        msg = f"personas are not JSON: {_short(exc)}"
        text = json.dumps(_error("invalid_personas", msg, seconds=doc.get("program_seconds")))
    if len(text) > limit:
        msg = f"serialised personas are {len(text)} bytes, over the {limit}-byte limit"
        text = json.dumps(_error("output_too_large", msg, seconds=doc.get("program_seconds")))
    return text.encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # the program may have closed or replaced it
            stream.flush()


def run_child(job: dict[str, Any], fds: list[int], workdir: str, ctx: ChildContext) -> NoReturn:
    """Entry point in the forked child. Never returns."""
    code = 70
    try:
        try:
            _confine(job, fds, workdir, ctx)
        except BaseException as exc:
            doc = _error("sandbox_error", f"sandbox set-up failed: {_short(exc)}")
            _write_all(RESULT_FD, json.dumps(doc).encode())
            code = 71
            return  # to the finally: os._exit
        doc = _execute(job, workdir, ctx)
        if doc is None:
            code = 0
            return
        data = _serialise(doc, int(float(job["limits"]["output_mb"]) * (1 << 20)))
        _flush_stdio()
        _write_all(RESULT_FD, data)
        code = 0
    except BaseException:  # nothing sensible left to report; the exit status says it
        pass
    finally:
        os._exit(code)


__all__ = ["ChildContext", "LLMError", "LLMProxy", "run_child"]
