"""Uniform baseline: every axis drawn independently and uniformly, infeasible
combinations rejected."""


def draw_value(axis, rng):
    """One value of an axis, uniformly over its range or its values."""
    if axis.kind == "continuous":
        return float(rng.uniform(axis.low, axis.high))
    return axis.values[int(rng.integers(0, len(axis.values)))]


def generate(space, n, rng, llm=None):
    personas = []
    attempts = 0
    # Rejection sampling: a bounded number of tries so a tight space cannot loop forever.
    while len(personas) < n and attempts < 200 * n:
        attempts += 1
        traits = {axis.name: draw_value(axis, rng) for axis in space.axes}
        if space.is_feasible(traits):
            personas.append({"id": f"uniform-{len(personas)}", "traits": traits})
    return personas
