"""Lifts the recursion limit and recurses through C (map): the C stack overflows (SIGSEGV)."""


def descend(depth):
    return list(map(descend, [depth + 1]))


def generate(space, n, rng, llm=None):
    __import__("sys").setrecursionlimit(10**8)
    return descend(0)
