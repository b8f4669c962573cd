"""Machine-wide leases held through ``flock``: uid slots and sandbox temporary directories.

A lock held with ``flock`` is released by the kernel when the last descriptor of its open
file closes, however its holders end (``kill -9``, ``ray.kill``, a crash). That makes it the
one record of ownership that cannot go stale:

* **Slots.** Every worker of every sandbox on the machine holds one slot file of a shared
  directory, ``slot-K.lock``, for as long as it lives (the host and the worker's zygote
  both keep the descriptor), and runs programs as uid ``uid_base + K``. Two concurrent
  workers, of one sandbox, of two Ray actors or of two runs, therefore never share a uid,
  so ``RLIMIT_NPROC`` is a quota per worker, not one for the machine.
* **Temporary directories.** A sandbox's directory holds ``owner.lock``, locked by the
  sandbox's process. A new sandbox removes every ``personaevo-sandbox-*`` directory whose
  owner lock nobody holds: what a killed process left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

DIR_PREFIX = "personaevo-sandbox-"
OWNER_LOCK = "owner.lock"
MAX_SLOTS = 4096
"""Concurrent workers per machine (uids ``uid_base`` .. ``uid_base + MAX_SLOTS - 1``)."""
ORPHAN_GRACE_S = 60.0
"""A sandbox directory without an owner lock (made by an older version) is removed once
it is this old."""
_LOCK_DIR_CANDIDATES = ("/run/lock", "/run", "/var/tmp", "/tmp")


def slot_directory() -> str:
    """The machine-wide directory of slot locks (created on first use, root only)."""
    override = os.environ.get("PERSONAEVO_SANDBOX_SLOTS")
    if override:
        os.makedirs(override, mode=0o700, exist_ok=True)
        return override
    for parent in _LOCK_DIR_CANDIDATES:
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            path = os.path.join(parent, f"personaevo-sandbox-slots-{os.geteuid()}")
            os.makedirs(path, mode=0o700, exist_ok=True)
            return path
    raise OSError("no writable directory for sandbox slot locks")


@dataclass
class SlotLease:
    """One held slot: ``slot`` is free for nobody else while ``fd`` is open anywhere."""

    slot: int
    fd: int

    def release(self) -> None:
        """Close this process's descriptor (the slot frees once every holder closed it)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def acquire_slot(directory: str | None = None, max_slots: int = MAX_SLOTS) -> SlotLease:
    """Lock the lowest free slot of ``directory``; raises OSError when all are taken."""
    directory = directory or slot_directory()
    for slot in range(max_slots):
        path = os.path.join(directory, f"slot-{slot}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return SlotLease(slot, fd)
    raise OSError(f"all {max_slots} sandbox slots in {directory} are in use")


@dataclass
class OwnedDirectory:
    """A temporary directory and the descriptor of its locked owner file."""

    path: str
    fd: int

    def remove(self) -> None:
        """Delete the directory, then give up the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def create_owned_directory(parent: str | None = None) -> OwnedDirectory:
    """A fresh ``personaevo-sandbox-*`` directory in ``parent`` (the temporary directory),
    owned by this process: its lock is taken under a temporary name and then renamed
    into place, so a concurrent sweep never sees an unlocked ``owner.lock``."""
    path = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent)
    staging = os.path.join(path, f".{OWNER_LOCK}.{os.getpid()}")
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(staging, os.path.join(path, OWNER_LOCK))
    return OwnedDirectory(path, fd)


def sweep_abandoned_directories(parent: str | None = None) -> list[str]:
    """Remove the sandbox directories in ``parent`` whose owner is gone; returns them."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        if not entry.startswith(DIR_PREFIX) or entry.startswith(DIR_PREFIX + "slots"):
            continue
        path = os.path.join(parent, entry)
        if _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _abandoned(path: str) -> bool:
    try:
        fd = os.open(os.path.join(path, OWNER_LOCK), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return os.path.isdir(path) and time.time() - os.stat(path).st_mtime > ORPHAN_GRACE_S
        except OSError:
            return False
    except OSError:
        return False  # not ours to judge (another user's)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
