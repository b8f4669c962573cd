"""Returns NaN (or +inf with space["inf"]) trait values: `invalid_personas`."""

import math


def generate(space, n, rng, llm=None):
    value = math.inf if space.get("inf") else math.nan
    return [{"id": i, "traits": {"x": value}} for i in range(n)]
