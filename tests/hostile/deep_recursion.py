"""Unbounded Python recursion: RecursionError, so `exception`."""


def descend(depth):
    return descend(depth + 1)


def generate(space, n, rng, llm=None):
    return descend(0)
