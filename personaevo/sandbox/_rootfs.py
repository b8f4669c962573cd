"""The filesystem a program sees: a new root built from an allow-list, nothing else.

Inside the zygote's own mount namespace, :func:`enter_allow_listed_root` builds a fresh
root on an empty tmpfs and ``pivot_root``s into it. The old root is detached, so no path
leads back to the host's files. The new root holds only:

* read-only bind mounts of the paths in ``expose``: the standard library, the
  site-packages the interpreter imports from, personaevo's package directory (not the
  checkout around it), the directories of the shared libraries the interpreter has
  loaded, and ``/etc/ld.so.cache`` so that an extension module imported later can find
  its libraries; the host's top-level symlinks (``/lib -> usr/lib``) are copied;
* ``/dev/null`` and ``/dev/zero`` (bind mounts of the host's devices; no ``urandom``:
  programs get randomness from ``rng`` only);
* a fresh ``/proc`` of the worker's PID namespace;
* a private, size-bounded tmpfs for working directories (``/tmp`` unless an exposed
  path lies below ``/tmp``).

Everything else (``/etc``, home directories, the checkout, run directories, the host's
``/tmp``, ``/sys``, ``/dev/shm``) is absent. :func:`exposed_paths` says what to expose.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import sysconfig

from personaevo.sandbox import _linux

DEVICES = ("/dev/null", "/dev/zero")
LOADER_FILES = ("/etc/ld.so.cache",)
MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_WORKDIR_CANDIDATES = ("/tmp", "/var/tmp", "/sandbox-work")


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _tops(paths: list[str]) -> list[str]:
    """``paths`` without those lying inside another one, sorted."""
    unique = sorted(set(paths))
    return [p for p in unique if not _inside(p, [q for q in unique if q != p])]


def exposed_paths(package_dir: str) -> list[str]:
    """What programs must be able to read: the standard library, the site-packages on
    ``sys.path`` below the interpreter's prefixes, ``package_dir`` and the directories of
    the shared objects mapped into this process (call after the preload imports)."""
    prefixes = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    paths = [package_dir]
    config = sysconfig.get_paths()
    paths += [config[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in config]
    for entry in sys.path:
        if os.path.isabs(entry) and _inside(os.path.realpath(entry), prefixes):
            paths.append(entry)
    paths += _mapped_library_directories()
    return _tops([p for p in paths if os.path.isdir(p)])


def _mapped_library_directories() -> list[str]:
    found = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    found.add(os.path.dirname(parts[5].strip()))
    except OSError:
        pass
    return sorted(found)


def workdir_root(expose: list[str]) -> str:
    """Where the tmpfs of working directories goes in the new root: the first candidate
    that neither holds nor lies in an exposed path."""
    real = [os.path.realpath(p) for p in expose] + list(expose)
    for root in _WORKDIR_CANDIDATES:
        if not any(_inside(p, [root]) or _inside(root, [p]) for p in real):
            return root
    return _WORKDIR_CANDIDATES[-1]


def _make_dirs(new_root: str, path: str) -> str:
    target = new_root + path
    os.makedirs(target, mode=0o755, exist_ok=True)
    return target


def _make_file(new_root: str, path: str) -> str:
    target = new_root + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if not os.path.lexists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    return target


def _bind(source: str, target: str, device: bool = False) -> None:
    _linux.mount(source, target, None, _linux.MS_BIND | _linux.MS_REC, None)
    extra = 0 if device else _linux.MS_NODEV
    flags = _linux.MS_NOSUID | extra | _linux.MS_RDONLY | _linux.MS_REMOUNT | _linux.MS_BIND
    try:
        _linux.mount(None, target, None, flags | _locked_flags(target), None)
    except OSError:  # keep the flags the kernel insists on (user namespaces), add ro
        _linux.mount(None, target, None, flags | _linux.MS_NOSUID, None)


def _locked_flags(target: str) -> int:
    for point, flags in reversed(_linux.mount_points()):
        if point == target:
            return flags
    return 0


def _copy_top_level_symlinks(new_root: str) -> None:
    for entry in os.listdir("/"):
        path = "/" + entry
        if os.path.islink(path) and not os.path.lexists(new_root + path):
            os.symlink(os.readlink(path), new_root + path)


def _pivot_root(new_root: str) -> None:
    """Make ``new_root`` the root of this mount namespace and detach the old one."""
    os.chdir(new_root)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    libc = _linux.libc()
    if number is not None:
        libc.syscall.restype = ctypes.c_long
        if libc.syscall(number, b".", b".") != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pivot_root: {os.strerror(err)}")
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        if libc.umount2(b".", MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"umount2(old root): {os.strerror(err)}")
    else:  # an architecture without a known syscall number: move the mount, chroot
        _linux.mount(new_root, "/", None, _linux.MS_MOVE, None)
        os.chroot(".")
    os.chdir("/")


def enter_allow_listed_root(
    staging: str, expose: list[str], workdir_mb: int, fresh_proc: bool
) -> tuple[str, list[str]]:
    """Build the allow-listed root at ``staging`` (an empty directory) and pivot into it.

    Call only inside a new mount namespace, as its root. Returns the working-directory
    root inside the new root and notes on what could not be done.
    """
    notes: list[str] = []
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE, None)
    os.makedirs(staging, mode=0o755, exist_ok=True)
    _linux.mount("tmpfs", staging, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV, "mode=0755,size=1m")
    old_umask = os.umask(0o022)
    try:
        for path in _tops(expose):
            _bind(os.path.realpath(path), _make_dirs(staging, path))
            real = os.path.realpath(path)
            if real != path and not _inside(real, expose):
                _bind(real, _make_dirs(staging, real))
        for path in LOADER_FILES:
            if os.path.isfile(path):
                _bind(path, _make_file(staging, path))
        for device in DEVICES:
            try:
                _bind(device, _make_file(staging, device), device=True)
            except OSError as exc:
                notes.append(f"{device} not available: {exc.strerror}")
        _copy_top_level_symlinks(staging)
        proc = _make_dirs(staging, "/proc")
        if fresh_proc:
            _linux.mount(
                "proc", proc, "proc", _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC, None
            )
        else:
            notes.append("no /proc: the worker has no PID namespace of its own")
        root = workdir_root(expose)
        workdir = _make_dirs(staging, root)
        opts = f"mode=0755,size={workdir_mb}m,nr_inodes=16384"
        _linux.mount("tmpfs", workdir, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV, opts)
        ro = _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY
        _linux.mount(None, staging, None, ro | _linux.MS_NOSUID | _linux.MS_NODEV, None)
    finally:
        os.umask(old_umask)
    _pivot_root(staging)
    return root, notes
