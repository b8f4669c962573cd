"""Calls what a generator never needs: ptrace, namespaces, mounts, keys, BPF, perf
events, io_uring, inet sockets and OS randomness. Reports each call's outcome."""


def generate(space, n, rng, llm=None):
    ctypes = __import__("ctypes")
    os = __import__("os")
    socket = __import__("socket")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    numbers = {  # x86_64
        "ptrace": (101, 0, 0, 0, 0),  # PTRACE_TRACEME
        "unshare_user": (272, 0x10000000, 0, 0, 0),
        "unshare_net": (272, 0x40000000, 0, 0, 0),
        "mount": (165, 0, 0, 0, 0),
        "setns": (308, 0, 0, 0, 0),
        "keyctl": (250, 0, 0, 0, 0),
        "bpf": (321, 0, 0, 0, 0),
        "perf_event_open": (298, 0, 0, -1, -1),
        "io_uring_setup": (425, 1, 0, 0, 0),
        "userfaultfd": (323, 0, 0, 0, 0),
        "clone_newuser": (56, 0x10000000 | 17, 0, 0, 0),
    }
    traits = {}
    for name, (number, *args) in numbers.items():
        ret = libc.syscall(number, *[ctypes.c_long(a) for a in args])
        err = ctypes.get_errno()
        if ret == 0 and name == "clone_newuser":  # the child of a successful clone
            os._exit(0)
        traits[name] = "allowed" if ret >= 0 else __import__("errno").errorcode.get(err, err)
    for name, family in (("socket_inet", socket.AF_INET), ("socket_inet6", socket.AF_INET6)):
        try:
            socket.socket(family, socket.SOCK_STREAM).close()
            traits[name] = "allowed"
        except OSError as exc:
            traits[name] = type(exc).__name__
    try:
        os.urandom(8)
        traits["urandom"] = "allowed"
    except Exception as exc:
        traits["urandom"] = type(exc).__name__
    try:
        __import__("numpy").random.default_rng().random()
        traits["unseeded_rng"] = "allowed"
    except Exception as exc:
        traits["unseeded_rng"] = type(exc).__name__
    return [{"id": 0, "traits": traits}]
