"""Deliberately extreme personas: each axis is pushed to its low or high end with high
probability, so corners of the space (and their crossings) are visited far more often
than any real population would."""

EXTREME_SHARE = 0.8  # chance that an axis is pushed to one of its ends
END_WIDTH = 0.1  # continuous ends: the outer 10% of the range


def extreme_value(axis, rng, high):
    if axis.kind == "continuous":
        span = axis.high - axis.low
        if high:
            return float(rng.uniform(axis.high - END_WIDTH * span, axis.high))
        return float(rng.uniform(axis.low, axis.low + END_WIDTH * span))
    return axis.values[-1] if high else axis.values[0]


def middle_value(axis, rng):
    if axis.kind == "continuous":
        return float(rng.uniform(axis.low, axis.high))
    return axis.values[int(rng.integers(0, len(axis.values)))]


def generate(space, n, rng, llm=None):
    personas = []
    attempts = 0
    while len(personas) < n and attempts < 200 * n:
        attempts += 1
        traits = {}
        for axis in space.axes:
            if rng.random() < EXTREME_SHARE:
                traits[axis.name] = extreme_value(axis, rng, high=rng.random() < 0.5)
            else:
                traits[axis.name] = middle_value(axis, rng)
        if space.is_feasible(traits):
            personas.append({"id": f"extreme-{len(personas)}", "traits": traits})
    return personas
