"""A multi-node Ray cluster on one machine, for tests and benchmarks of the cluster path.

Each node is a ``ray start`` of its own (a raylet with its own CPUs), all on 127.0.0.1,
with token authentication on: the token is a file of the cluster's own, reaching every
node and driver as ``RAY_AUTH_TOKEN_PATH`` (how a real cluster's nodes get it too; see
``docs/cluster.md``). The cluster's files are in a private temporary directory, and
:meth:`LocalCluster.stop` ends exactly the processes started for it (found by that
directory in their command line), never another Ray on the machine (``ray stop`` would).

Ray's servers listen on every interface; to keep them on 127.0.0.1 only, run the whole
thing in a network namespace of its own (``unshare --net``, see
:func:`in_private_network`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]
FAST_NODE_DEATH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_private_network(command: list[str]) -> list[str] | None:
    """``command`` run in a network namespace holding only the loopback interface (so
    whatever it starts is reachable from 127.0.0.1 only), or None where this machine
    does not allow one (neither root nor unprivileged user namespaces)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None
    for flags in (["--net"], ["--net", "--map-root-user"]):
        probe = subprocess.run(
            [unshare, *flags, ip, "link", "set", "lo", "up"], capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            script = f'{ip} link set lo up && exec "$@"'
            return [unshare, *flags, "sh", "-c", script, "sh", *command]
    return None


class LocalCluster:
    """A head node and worker nodes of ``cpus`` CPUs each, on 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pe-ray-"))  # short: socket paths
        self.token = self.root / "auth_token"
        self.token.write_text(secrets.token_hex(16))
        self.port = free_port()
        self.nodes: dict[str, int] = {}  # node name -> its raylet's port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, auth_mode: bool = True) -> dict[str, str]:
        """The environment of a node or a driver of this cluster: the token file, and
        ``RAY_AUTH_MODE=token`` unless ``auth_mode`` is false (a driver that should find
        out by itself)."""
        env = dict(os.environ, RAY_AUTH_TOKEN_PATH=str(self.token), RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_ADDRESS", None)
        if auth_mode:
            env["RAY_AUTH_MODE"] = "token"
        else:
            env.pop("RAY_AUTH_MODE", None)
        return env

    def _start(self, name: str, args: list[str], cpus: int) -> None:
        port = free_port()
        command = [
            *RAY_CLI,
            "start",
            *args,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(cpus),
            "--node-manager-port",
            str(port),
            "--temp-dir",
            str(self.root / name),
            "--disable-usage-stats",
        ]
        with (self.root / f"{name}.log").open("w") as log:
            subprocess.run(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, check=True
            )
        self.nodes[name] = port

    def start_head(self, cpus: int = 1) -> None:
        """Start the head node. It declares a node dead after about 3 s without a
        heartbeat (Ray's default is about 15 s), so that a test of a lost node is short;
        nothing else differs from a default cluster."""
        args = ["--head", "--port", str(self.port), "--include-dashboard", "false"]
        args += ["--system-config", json.dumps(FAST_NODE_DEATH)]
        self._start("head", args, cpus)

    def add_node(self, name: str, cpus: int = 1) -> None:
        """Start a worker node and wait until the cluster counts it."""
        self._start(name, ["--address", self.address], cpus)

    def raylet(self, name: str) -> psutil.Process:
        """The raylet process of node ``name``."""
        flag = f"--node_manager_port={self.nodes[name]}"
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0].endswith("raylet") and flag in cmdline:
                return proc
        raise LookupError(f"no raylet of node {name}")

    def kill_node(self, name: str) -> None:
        """``kill -9`` of the node's raylet (a machine lost, as Ray sees it)."""
        self.raylet(name).send_signal(signal.SIGKILL)

    def processes(self) -> list[psutil.Process]:
        """Every process started for this cluster (its directory in their arguments)."""
        mine = str(self.root)
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(mine in arg for arg in proc.info["cmdline"] or []):
                    found.append(proc)
            except (psutil.Error, TypeError):
                continue
        return found

    def stop(self) -> None:
        """End this cluster's processes (and nothing else), then remove its files."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
