"""Calls os._exit(0) mid-run, producing no output: `crashed`."""


def generate(space, n, rng, llm=None):
    __import__("os")._exit(0)
