"""Run ``vllm serve`` as a subprocess: an OpenAI-compatible server for the ``openai:`` backend.

::

    with VLLMServer("/models/tiny", venv=".venv-vllm", args=cpu_args(), env=CPU_ENV) as server:
        llm = build_llm(LLMConfig(backend=f"openai:{server.base_url}", model=server.name))

:class:`VLLMServer` starts ``VENV/bin/vllm serve MODEL --host H --port P
--served-model-name NAME ARGS...`` in a session of its own, waits until ``GET /v1/models``
lists ``NAME`` (``startup_seconds`` records how long that took), and on :meth:`stop` sends
SIGTERM to that session's process group (vLLM's API server, engine core and worker
processes), then SIGKILL after ``stop_timeout`` seconds. The server's output goes to
``log`` (a file), whose last lines are quoted when it fails to start.

vLLM itself lives in a virtual environment of its own (it pins its own torch and
transformers): ``scripts/vllm_cpu_env.sh`` builds vLLM's CPU build there, and
:func:`cpu_args` / :data:`CPU_ENV` are the settings that start it on a small CPU machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from personaevo.errors import InputError

__all__ = [
    "CPU_ENV",
    "VLLMServer",
    "VLLMServerError",
    "cpu_args",
    "find_vllm",
    "free_port",
    "vllm_venv",
]


def cpu_args(max_model_len: int = 1024, max_num_seqs: int = 16) -> tuple[str, ...]:
    """``vllm serve`` options for vLLM's CPU build on a machine with a few cores.

    * ``--dtype float32``: as the transformers backend computes, so greedy replies agree;
    * ``--enforce-eager``: no torch.compile (vLLM's CPU default compiles the model with
      inductor at start-up) and no graph capture;
    * ``--max-model-len`` = ``--max-num-batched-tokens`` with ``--no-enable-chunked-prefill``:
      every prompt is prefilled in one step. vLLM 0.32.0's CPU runner crashes its engine
      (``RuntimeError: CPU Generator does not use offset``; the server then refuses every
      request) when a *seeded* request at temperature > 0 is prefilled in chunks, which
      the CPU default (chunks of 2048 tokens) does to any longer prompt.
    """
    return (
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-num-seqs",
        str(max_num_seqs),
        "--max-model-len",
        str(max_model_len),
        "--max-num-batched-tokens",
        str(max_model_len),
        "--no-enable-chunked-prefill",
    )


#: Environment for vLLM's CPU build: 1 GiB of KV cache (a tiny model needs far less; the
#: default sizes it from free memory), no usage statistics sent, no hub look-ups.
CPU_ENV: Mapping[str, str] = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


class VLLMServerError(RuntimeError):
    """The server exited or did not answer in time; the message quotes its log."""


def vllm_venv() -> Path:
    """Where ``scripts/vllm_cpu_env.sh`` puts vLLM: ``$PERSONAEVO_VLLM_VENV``, else
    ``.venv-vllm`` in the current directory."""
    return Path(os.environ.get("PERSONAEVO_VLLM_VENV") or ".venv-vllm").expanduser()


def find_vllm(venv: str | Path | None = None) -> Path:
    """The ``vllm`` executable of ``venv`` (default :func:`vllm_venv`), else the one on
    ``PATH``; an :class:`InputError` saying how to build it when there is none."""
    root = Path(venv).expanduser() if venv is not None else vllm_venv()
    candidate = root / "bin" / "vllm"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate.absolute()
    if venv is None and (on_path := shutil.which("vllm")):
        return Path(on_path)
    raise InputError(
        f"vLLM: no executable {str(candidate)!r}; build vLLM's CPU environment with "
        f"`scripts/vllm_cpu_env.sh {root}` (or install vllm on a GPU machine)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class VLLMServer:
    """One ``vllm serve`` subprocess serving ``model`` as ``name`` on ``host:port``.

    ``port=None`` picks a free port. ``env`` is added to this process's environment.
    ``startup_timeout`` (seconds) bounds :meth:`start`'s wait for ``/v1/models``.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        name: str = "model",
        venv: str | Path | None = None,
        executable: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log: str | Path | None = None,
        startup_timeout: float = 600.0,
        stop_timeout: float = 30.0,
    ) -> None:
        folder = Path(model).expanduser()
        if not (folder / "config.json").is_file():
            raise InputError(f"vLLM: {str(folder)!r} is not a model folder (no config.json)")
        self.model = folder.absolute()
        self.name = name
        self.executable = Path(executable) if executable is not None else find_vllm(venv)
        self.host = host
        self.port = port or free_port(host)
        self.args = tuple(args)
        self.env = dict(env or {})
        self.log = Path(log) if log is not None else _temp_log()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root, for ``LLMConfig(backend=f"openai:{base_url}")``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def command(self) -> list[str]:
        return [
            str(self.executable),
            "serve",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--served-model-name",
            self.name,
            *self.args,
        ]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> VLLMServer:
        """Start the server and wait until it lists the model; stop it again on failure."""
        if self._process is not None:
            raise RuntimeError("VLLMServer.start: already started")
        start = time.perf_counter()
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        try:
            self._wait_ready(start)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - start
        return self

    def _wait_ready(self, start: float) -> None:
        url = f"{self.base_url}/models"
        while True:
            code = self._process.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vllm serve {self.model} exited with code {code} before it was ready; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    served = [m.get("id") for m in json.load(response).get("data", [])]
                if self.name in served:
                    return
            except (OSError, ValueError):  # not listening yet, or still starting up
                pass
            if time.perf_counter() - start > self.startup_timeout:
                raise VLLMServerError(
                    f"vllm serve {self.model}: {url} did not list {self.name!r} within "
                    f"{self.startup_timeout:.0f} s; log {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after ``stop_timeout`` seconds;
        returns the server's exit code (``None`` if it was never started)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        # Workers that outlived the API server still belong to its process group.
        _signal_group(process.pid, signal.SIGKILL)
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _temp_log() -> Path:
    handle, path = tempfile.mkstemp(prefix="vllm-serve-", suffix=".log")
    os.close(handle)
    return Path(path)
