"""Returns a trait value that is not JSON: `invalid_personas`."""


def generate(space, n, rng, llm=None):
    return [{"id": 0, "traits": {"blob": object()}}]
