"""Connecting the driver to Ray: a private local cluster, or the cluster it is given.

Without an address the driver starts its own local cluster (``address="local"``), so a
run never joins a cluster someone else started on the same machine with ``ray start``,
nor one named by ``$RAY_ADDRESS``. Ray starts it with token authentication on (its
default for new local clusters).

With an address the driver joins that cluster. Ray's token authentication reaches a
process by one of ``$RAY_AUTH_TOKEN`` (the token), ``$RAY_AUTH_TOKEN_PATH`` (a file
holding it) or ``~/.ray/auth_token``; ``ray start --head`` turns authentication on when
it finds a token that way, and every node and driver joining must then have the same
token and ``RAY_AUTH_MODE=token``. When ``RAY_AUTH_MODE`` is unset and a token is found,
:func:`connect` sets it, so a driver holding the cluster's token joins it without more.
A refused token is reported in one line saying how to get the right one.
"""

from __future__ import annotations

import os
from pathlib import Path

import ray

from personaevo.errors import InputError

AUTH_MODE_ENV = "RAY_AUTH_MODE"


def token_source() -> str | None:
    """Where this process would read a Ray authentication token from, or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and Path(path).expanduser().is_file():
        return f"$RAY_AUTH_TOKEN_PATH ({path})"
    default = Path.home() / ".ray" / "auth_token"
    if default.is_file():
        return str(default)
    return None


def connect(address: str | None, workers: int) -> bool:
    """Start a private local Ray cluster of ``workers`` CPUs (no ``address``), or join
    the one at ``address``; True when this call started Ray (so it shuts it down)."""
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if not address:
        ray.init(address="local", num_cpus=workers, **options)
        return True
    source = token_source()
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode == "token" or (mode is None and source is not None):
        _enable_token_auth()
    try:
        ray.init(address=address, **options)
    except Exception as err:  # Ray raises several kinds; only the message tells them apart
        raise InputError(_join_failure(address, err, source)) from None
    return True


def _enable_token_auth() -> None:
    """``RAY_AUTH_MODE=token`` for this process and its children. Ray reads its
    configuration when it is imported, so the cached copy is refreshed too (what
    ``ray start`` does when it finds a token), also when the variable was set after
    the import."""
    os.environ[AUTH_MODE_ENV] = "token"
    from ray._raylet import Config

    Config.initialize("")


def _join_failure(address: str, err: Exception, source: str | None) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    causes, cause = [], err
    while cause is not None and len(causes) < 5:
        causes.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    if any("auth" in c.lower() or "token" in c.lower() for c in causes):
        held = f"the token from {source}" if source else "no token"
        return (
            f"--address {address}: the cluster refused this driver ({held}): it uses token "
            f"authentication; copy the head node's token (`ray get-auth-token` there) to "
            f"~/.ray/auth_token here, or set RAY_AUTH_TOKEN, and RAY_AUTH_MODE=token"
        )
    return f"--address {address}: cannot join the Ray cluster: {text[:300]}"
