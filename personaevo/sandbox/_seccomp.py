"""The syscall filter of program processes, built with libseccomp (through ctypes).

libseccomp is the library Docker, podman, systemd and nsjail build their filters with: it
resolves syscall names per architecture, handles the ABI quirks (x32, multiplexed
``socketcall``) and compiles the BPF program. Nothing here writes BPF by hand; this
module only lists what a generator never needs and asks libseccomp for a filter that
refuses it. The filter allows everything else (a deny-list: numpy, scipy and the
interpreter use a wide and version-dependent set of calls) and answers a refused call
with an error, so the program sees an ``OSError`` (``PermissionError``) and fails as an
``exception`` with a readable message rather than a kill:

* kernel attack surface and namespace escapes: ``ptrace``, ``process_vm_*``, ``mount``
  and the new mount API, ``pivot_root``, ``chroot``, ``unshare``, ``setns``, ``clone``
  with any ``CLONE_NEW*`` flag, ``clone3`` (``ENOSYS``, so that the C library falls
  back to ``clone``, whose flags can be checked), ``keyctl``/``add_key``/
  ``request_key``, ``bpf``, ``perf_event_open``, ``io_uring_*``, ``userfaultfd``,
  ``kexec_*``, modules, ``open_by_handle_at``, ``swapon``, ``reboot``, clock setting,
  ``acct``, ``quotactl``, ``syslog``, ``iopl``/``ioperm``, ``pidfd_getfd``;
* the network: ``socket`` for any family but ``AF_UNIX``.

``getrandom`` stays allowed: numpy draws (and then discards) OS entropy when it copies
or unpickles a generator (``qmc.Sobol(seed=rng)`` deep-copies ``rng``), so refusing it
would break seeded programs; unseeded generators are refused by the static check.

The filter is built and compiled by libseccomp once per worker (:class:`SyscallFilter`,
:meth:`SyscallFilter.compile`); every program child installs the compiled program after
it dropped its privileges (one ``prctl``, ~0.02 ms instead of ~1.3 ms for
``seccomp_load``); its forks inherit it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket

from personaevo.sandbox import _linux

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1
SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1

NAMESPACE_CLONE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

REFUSED_SYSCALLS: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "acct",
    "quotactl",
    "syslog",
    "iopl",
    "ioperm",
    "pidfd_getfd",
    "lookup_dcookie",
    "vhangup",
    "uselib",
)
"""Refused outright with EPERM (names unknown on the running architecture are skipped)."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO(code)


class FilterUnavailableError(OSError):
    """libseccomp is missing, or refused to build or load the filter."""


class SyscallFilter:
    """A libseccomp filter context with the sandbox's rules, ready to :meth:`load`."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            self._lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise FilterUnavailableError(f"libseccomp not found ({name}): {exc}") from exc
        lib = self._lib
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.restype = ctypes.c_int
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.restype = ctypes.c_int
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self._ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not self._ctx:
            raise FilterUnavailableError("seccomp_init failed")
        self.refused: list[str] = []
        """The syscalls the filter refuses (with a condition, for clone and socket)."""
        eperm = _errno_action(errno.EPERM)
        for syscall in REFUSED_SYSCALLS:
            if self._add(syscall, eperm):
                self.refused.append(syscall)
        if self._add("clone3", _errno_action(errno.ENOSYS)):
            self.refused.append("clone3 (ENOSYS)")
        if all(
            self._add("clone", eperm, (0, SCMP_CMP_MASKED_EQ, f, f)) for f in NAMESPACE_CLONE_FLAGS
        ):
            self.refused.append("clone with CLONE_NEW*")
        if self._add("socket", eperm, (0, SCMP_CMP_NE, socket.AF_UNIX, 0)):
            self.refused.append("socket except AF_UNIX")

    def _add(self, syscall: str, action: int, *conditions: tuple[int, int, int, int]) -> bool:
        number = self._lib.seccomp_syscall_resolve_name(syscall.encode())
        if number == _NR_SCMP_ERROR:
            return False  # not a syscall of this architecture
        array = (_ArgCmp * max(1, len(conditions)))(*(_ArgCmp(*c) for c in conditions))
        ret = self._lib.seccomp_rule_add_array(self._ctx, action, number, len(conditions), array)
        if ret < 0:
            raise FilterUnavailableError(
                -ret, f"seccomp_rule_add({syscall}): {errno.errorcode.get(-ret, ret)}"
            )
        return True

    def compile(self) -> CompiledFilter:
        """The BPF program libseccomp generates for these rules (exported once, so that
        each program child installs it with one ``prctl`` instead of compiling it)."""
        self._lib.seccomp_export_bpf.restype = ctypes.c_int
        self._lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fd = os.memfd_create("personaevo-seccomp", os.MFD_CLOEXEC)
        try:
            ret = self._lib.seccomp_export_bpf(self._ctx, fd)
            if ret < 0:
                raise FilterUnavailableError(-ret, f"seccomp_export_bpf: {os.strerror(-ret)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return CompiledFilter(b"".join(chunks), tuple(self.refused))


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class CompiledFilter:
    """A libseccomp-generated BPF program, installed with :meth:`install`."""

    def __init__(self, program: bytes, refused: tuple[str, ...]) -> None:
        if not program or len(program) % ctypes.sizeof(_SockFilter):
            raise FilterUnavailableError("libseccomp exported no usable BPF program")
        self.refused = refused
        count = len(program) // ctypes.sizeof(_SockFilter)
        self._instructions = (_SockFilter * count).from_buffer_copy(program)
        self._prog = _SockFprog(count, self._instructions)

    def install(self) -> None:
        """Install on the calling process (irrevocable, inherited by its children).
        ``no_new_privs`` must be set first (it is, in every program child)."""
        libc = _linux.libc()
        libc.prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        ret = libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self._prog), 0, 0)
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        if ret != 0:
            err = ctypes.get_errno()
            raise FilterUnavailableError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
