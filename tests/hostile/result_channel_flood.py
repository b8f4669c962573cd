"""Bypasses the runner and streams 32 MB straight into the result channel (fd 3)."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    chunk = b"[" * 2**20
    for _ in range(32):
        os.write(3, chunk)
    __import__("time").sleep(600)
