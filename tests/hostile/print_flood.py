"""Prints 100 MB to stdout and 1 MB to stderr, then returns a valid persona."""


def generate(space, n, rng, llm=None):
    line = "x" * 999_999
    for _ in range(100):
        print(line)
    print("e" * 1_000_000, file=__import__("sys").stderr)
    return [{"id": 0, "traits": {"printed": True}}]
