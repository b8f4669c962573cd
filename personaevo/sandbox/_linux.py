"""Thin ctypes wrappers over the Linux calls Python 3.11 lacks (unshare, mount, prctl)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno tracking."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """``unshare(2)``; raises OSError on failure."""
    _check(libc().unshare(flags), f"unshare({flags:#x})")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """``mount(2)``; raises OSError on failure."""
    enc = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    _check(libc().mount(enc[0], enc[1], enc[2], flags, enc[3]), f"mount({target})")


def prctl(option: int, arg: int = 0) -> None:
    """``prctl(2)`` with one argument; raises OSError on failure."""
    _check(libc().prctl(option, arg, 0, 0, 0), f"prctl({option})")


def mount_points() -> list[tuple[str, int]]:
    """(mount point, per-mount flags to preserve) from /proc/self/mountinfo, in order."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            target = parts[4].encode().decode("unicode_escape")  # \040 etc.
            flags = 0
            for opt in parts[5].split(","):
                flags |= _MOUNT_OPTION_FLAGS.get(opt, 0)
            points.append((target, flags))
    return points


@dataclass
class Namespaces:
    """What :func:`enter_namespaces` managed to create."""

    pid: bool = False
    network: bool = False
    mount: bool = False
    ipc: bool = False
    user: bool = False
    notes: list[str] = field(default_factory=list)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def enter_namespaces() -> Namespaces:
    """Move the calling process into new PID, network, mount, IPC and UTS namespaces.

    As root this is a plain ``unshare``; otherwise an unprivileged user namespace is tried
    first (mapping the caller's uid to root inside it). The PID namespace only applies to
    children: the caller must fork, and that child becomes PID 1. When everything fails,
    a network namespace alone is tried. Returns what was applied, with reasons in notes.
    """
    ns = Namespaces()
    full = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.geteuid(), os.getegid()
    attempts = [(full, False)] if uid == 0 else [(full | CLONE_NEWUSER, True)]
    attempts.append((CLONE_NEWNET, False) if uid == 0 else (CLONE_NEWNET | CLONE_NEWUSER, True))
    for flags, user in attempts:
        try:
            unshare(flags)
        except OSError as exc:
            ns.notes.append(f"unshare failed: {exc}")
            continue
        if user:
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"0 {uid} 1")
                _write("/proc/self/gid_map", f"0 {gid} 1")
            except OSError as exc:  # the namespace exists but we hold no rights in it
                ns.notes.append(f"user namespace id mapping failed: {exc}")
        ns.user = user
        ns.network = bool(flags & CLONE_NEWNET)
        ns.pid = bool(flags & CLONE_NEWPID)
        ns.mount = bool(flags & CLONE_NEWNS)
        ns.ipc = bool(flags & CLONE_NEWIPC)
        return ns
    return ns


def blocking_ancestor(path: str) -> str | None:
    """The highest directory on the way to ``path`` (itself included) that other users
    cannot search (no o+x), or None when an unprivileged uid can reach ``path``."""
    current = "/"
    for part in [*Path(path).parts[1:], ""]:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
        if not part:
            return None
        current = os.path.join(current, part)
    return None
