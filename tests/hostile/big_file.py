"""Writes a file larger than the file-size limit in its working directory: `exception`."""


def generate(space, n, rng, llm=None):
    with __import__("builtins").open("big.bin", "wb") as fh:
        for _ in range(64):
            fh.write(b"\0" * 2**20)
    return [{"id": 0, "traits": {}}]
