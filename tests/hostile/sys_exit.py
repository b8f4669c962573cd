"""Calls sys.exit mid-run: `exited`."""


def generate(space, n, rng, llm=None):
    __import__("sys").exit(3)
