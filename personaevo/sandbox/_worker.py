"""Host side of one sandbox worker: starts its zygote and drives one job at a time."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personaevo.programs import GeneratorProgram
from personaevo.sandbox import _proto
from personaevo.sandbox._classify import Outcome, parse_strict
from personaevo.sandbox._leases import SlotLease
from personaevo.sandbox.models import Isolation, SandboxLimits, Validator

REPO_ROOT = str(Path(__file__).resolve().parents[2])
ENV_KEEP = (
    "PATH",
    "LANG",
    "LC_ALL",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # set/dict-of-str iteration order reproducible across runs
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "HOME": "/nonexistent",
    "PYTHONNOUSERSITE": "1",
}
_BOOT = (
    "import sys; sys.path.insert(0, {root!r}); from personaevo.sandbox._zygote import main; main()"
)
KILL_GRACE_S = 5.0
DRAIN_S = 2.0
_RPC_HEADER = struct.Struct("!I")
_RPC_REQUEST_MAX = 1 << 20


class WorkerDiedError(RuntimeError):
    """The worker's zygote is gone (or never came up)."""


@dataclass
class JobSpec:
    """Everything needed to run one program (host side)."""

    program: GeneratorProgram
    space: bytes
    n: int
    seed: int
    llm: Any
    validator: Validator | None
    limits: SandboxLimits


@dataclass
class _Stream:
    cap: int
    head: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, data: bytes) -> None:
        room = self.cap - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.total += len(data)

    def text(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        if self.total > len(self.head):
            text += f"\n[... truncated: {self.total - len(self.head)} more bytes]"
        return text


@dataclass
class JobIO:
    """What one job produced, as observed by the host."""

    outcome: Outcome
    stdout: _Stream
    stderr: _Stream
    child_pid: int | None = None


class Worker:
    """One zygote process and the host-side logic to run jobs on it."""

    def __init__(
        self, slot: int, config: dict[str, Any], log_dir: str, lease: SlotLease | None = None
    ) -> None:
        self.slot = slot
        self.lease = lease
        """The machine-wide uid slot; its lock is passed to the zygote, which keeps it."""
        self.config = {**config, "slot": slot}
        self.log_path = os.path.join(log_dir, f"zygote-{slot}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.reader = _proto.FrameReader()
        self.isolation = Isolation()
        self.preload_errors: list[str] = []
        self.starts = 0
        self.seq = 0

    # ------------------------------------------------------------------ lifecycle

    def spawn(self) -> None:
        """Start the zygote process (does not wait for it to be ready)."""
        self.stop()
        host_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [
            sys.executable,
            "-s",
            "-c",
            _BOOT.format(root=REPO_ROOT),
            str(zygote_end.fileno()),
            json.dumps(self.config),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=CHILD_ENV,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=[zygote_end.fileno()] + ([self.lease.fd] if self.lease else []),
                start_new_session=True,
            )
        zygote_end.close()
        host_end.settimeout(30.0)
        self.sock, self.reader = host_end, _proto.FrameReader()
        self.starts += 1

    def wait_ready(self, timeout: float) -> None:
        """Wait for the zygote's hello; raises WorkerDiedError with its log on failure."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while True:
            frame = next(self.reader.frames(), None)
            if frame is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._recv_ctl(left):
                self.stop()
                raise WorkerDiedError(
                    f"sandbox worker {self.slot} did not start: {self._log_tail()}"
                )
        tag, payload, _ = frame
        if tag != _proto.HELLO:
            self.stop()
            detail = payload.decode(errors="replace")[-3000:]
            raise WorkerDiedError(f"sandbox worker {self.slot} failed to start:\n{detail}")
        hello = json.loads(payload)
        self.isolation = Isolation(**hello["isolation"])
        self.preload_errors = list(hello["preload_errors"])

    def _recv_ctl(self, timeout: float) -> bool:
        assert self.sock is not None
        self.sock.settimeout(timeout)
        try:
            return self.reader.recv(self.sock)
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(30.0)

    def _log_tail(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-3000:] or "(no output)"
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        """True while the zygote process runs."""
        return self.proc is not None and self.proc.poll() is None and self.sock is not None

    def stop(self) -> None:
        """Kill the zygote and, with it, everything in its namespaces."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None

    @property
    def pid(self) -> int | None:
        """Host pid of the zygote's outer process (its process group id)."""
        return self.proc.pid if self.proc is not None else None

    # ------------------------------------------------------------------ one job

    def execute(self, spec: JobSpec) -> JobIO:
        """Run one job to completion. Raises WorkerDiedError if the job could not be sent."""
        if not self.alive():
            raise WorkerDiedError("worker not running")
        assert self.sock is not None
        limits = spec.limits
        pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, result
        rpc_host = rpc_child = None
        if spec.llm is not None:
            rpc_host, rpc_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        send = [w for _, w in pipes] + ([rpc_child.fileno()] if rpc_child else [])
        self.seq += 1
        job = {
            "seq": self.seq,
            "source": spec.program.source,
            "name": spec.program.name,
            "space": spec.space,
            "n": spec.n,
            "seed": spec.seed,
            "has_llm": spec.llm is not None,
            "limits": limits.model_dump(),
            "env_keep": ENV_KEEP,
        }
        start = time.monotonic()
        try:
            _proto.send_frame(self.sock, _proto.JOB, pickle.dumps(job, protocol=5), send)
        except OSError as exc:
            for r, _ in pipes:
                os.close(r)
            if rpc_host is not None:
                rpc_host.close()
            raise WorkerDiedError(f"could not send the job: {exc}") from exc
        finally:
            for fd in send[:3]:
                os.close(fd)
            if rpc_child is not None:
                rpc_child.close()
        io = JobIO(Outcome(), _Stream(limits.stdio_bytes), _Stream(limits.stdio_bytes))
        try:
            self._pump(io, pipes, rpc_host, spec, start)
        finally:
            if rpc_host is not None:
                rpc_host.close()
        return io

    def _pump(
        self,
        io: JobIO,
        pipes: list[tuple[int, int]],
        rpc: socket.socket | None,
        spec: JobSpec,
        start: float,
    ) -> None:
        assert self.sock is not None
        limits, out = spec.limits, io.outcome
        cap = int(limits.output_mb * (1 << 20))
        result = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "ctl")
        for (fd, _), tag in zip(pipes, ("out", "err", "res"), strict=True):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, tag)
        if rpc is not None:
            rpc.setblocking(False)
            sel.register(rpc, selectors.EVENT_READ, "rpc")
        rpc_buf, calls = bytearray(), [0]
        deadline = start + limits.wall_seconds
        kill_sent: float | None = None
        drain_until: float | None = None
        try:
            while True:
                now = time.monotonic()
                if drain_until is not None:
                    if len(sel.get_map()) <= (0 if out.done is None else 1) or now > drain_until:
                        break
                    timeout = drain_until - now
                elif kill_sent is None and now >= deadline:
                    out.timed_out = True
                    kill_sent = now
                    self._send_kill()
                    continue
                elif kill_sent is not None and now - kill_sent > KILL_GRACE_S:
                    out.worker_unresponsive = True  # never answered KILL: take it all down
                    if self.sock is not None and self.sock in sel.get_map():
                        sel.unregister(self.sock)
                    self._kill_orphans(io.child_pid)
                    self.stop()
                    drain_until = now + DRAIN_S
                    continue
                else:
                    timeout = (deadline if kill_sent is None else kill_sent + KILL_GRACE_S) - now
                for key, _ in sel.select(max(timeout, 0.0)):
                    tag = key.data
                    if tag == "ctl":
                        if not self._on_ctl(io):
                            sel.unregister(key.fileobj)
                            if out.done is None:
                                out.worker_died = not out.worker_unresponsive
                                self._kill_orphans(io.child_pid)
                                self.stop()
                            drain_until = time.monotonic() + DRAIN_S
                        elif out.done is not None and drain_until is None:
                            drain_until = time.monotonic() + DRAIN_S
                        continue
                    if tag == "rpc":
                        assert rpc is not None
                        if not self._on_rpc(rpc, rpc_buf, calls, spec, deadline):
                            sel.unregister(rpc)
                        continue
                    fd = key.fd
                    try:
                        data = os.read(fd, 1 << 20)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(fd)
                        continue
                    if tag == "res":
                        if not out.output_too_large and len(result) + len(data) > cap:
                            out.output_too_large = True
                            result.clear()
                            if kill_sent is None:
                                kill_sent = time.monotonic()
                                self._send_kill()
                        elif not out.output_too_large:
                            result += data
                    else:
                        (io.stdout if tag == "out" else io.stderr).add(data)
        finally:
            sel.close()
            for r, _ in pipes:
                os.close(r)
        out.result = result  # no copy: parsed as it is

    def _send_kill(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                _proto.send_frame(self.sock, _proto.KILL)

    def _on_ctl(self, io: JobIO) -> bool:
        assert self.sock is not None
        try:
            if not self.reader.recv(self.sock):
                return False
        except (BlockingIOError, TimeoutError):
            return True
        except OSError:
            return False
        for tag, payload, _ in self.reader.frames():
            message = json.loads(payload)
            if message.get("seq") != self.seq:
                continue  # left over from an earlier, abandoned job
            if tag == _proto.STARTED:
                io.child_pid = int(message["pid"])
            elif tag == _proto.DONE:
                io.outcome.done = message
        return True

    def _kill_orphans(self, pid: int | None) -> None:
        """Zygote gone mid-job without a PID namespace: kill the program's session."""
        if pid is None or self.isolation.pid:
            return  # in a PID namespace the kernel killed them with the zygote
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
                session = int(stat.rsplit(")", 1)[1].split()[3])
            except (OSError, ValueError, IndexError):
                continue
            if session == pid:
                with contextlib.suppress(OSError):
                    os.kill(int(entry), signal.SIGKILL)

    def _on_rpc(
        self, rpc: socket.socket, buf: bytearray, calls: list[int], spec: JobSpec, deadline: float
    ) -> bool:
        """Serve LM requests from the child; False when the channel is finished."""
        try:
            data = rpc.recv(1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        buf += data
        while len(buf) >= _RPC_HEADER.size:
            (size,) = _RPC_HEADER.unpack_from(buf)
            if size > _RPC_REQUEST_MAX:
                return False  # refuse to buffer it; the program sees a closed channel
            if len(buf) < _RPC_HEADER.size + size:
                break
            request = bytes(buf[_RPC_HEADER.size : _RPC_HEADER.size + size])
            del buf[: _RPC_HEADER.size + size]
            calls[0] += 1
            reply = _llm_reply(spec, request, calls[0])
            rpc.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                rpc.sendall(_RPC_HEADER.pack(len(reply)) + reply)
            except OSError:
                return False
            finally:
                rpc.setblocking(False)
        return True


def _llm_reply(spec: JobSpec, request: bytes, count: int) -> bytes:
    """Call the host-side LM client for one proxied request; return the JSON reply."""
    try:
        if count > spec.limits.max_llm_calls:
            raise PermissionError(f"more than {spec.limits.max_llm_calls} LM calls")
        req = parse_strict(request)
        method, args, kwargs = req["method"], req["args"], req["kwargs"]
        if not (isinstance(method, str) and isinstance(args, list) and isinstance(kwargs, dict)):
            raise TypeError("malformed LM request")
        if method == "__call__" and callable(spec.llm):
            target = spec.llm
        elif method.startswith("_"):
            raise AttributeError(f"LM method {method!r} is not available")
        else:
            target = getattr(spec.llm, method, None)
        if not callable(target):
            raise AttributeError(f"LM client has no method {method!r}")
        result = target(*args, **kwargs)
        return json.dumps(
            {"ok": True, "result": result}, allow_nan=False, default=_host_jsonable
        ).encode()
    except Exception as exc:
        return json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}).encode()


def _host_jsonable(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    item = getattr(obj, "item", None)
    if callable(item) and type(obj).__module__ == "numpy":
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(obj)
