"""Returns about 100 MB of personas: `output_too_large`."""


def generate(space, n, rng, llm=None):
    return [{"id": i, "traits": {"blob": "y" * 1000}} for i in range(100_000)]
