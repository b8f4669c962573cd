"""Statistical matching, the baseline the coverage research argues against: personas
drawn from the reference population's density (a Gaussian kernel around a random
respondent), or, without a reference, from the marginals the space declares."""

import numpy as np


def from_reference(space, sample, rng):
    """Kernel-density draw: a random respondent plus Gaussian noise of the bandwidth."""
    point = np.asarray(sample.unit[int(rng.integers(0, len(sample.unit)))])
    point = np.clip(point + rng.normal(0.0, sample.bandwidth, size=len(point)), 0.0, 1.0)
    traits = {}
    for axis, u in zip(space.axes, point, strict=True):
        if axis.kind == "continuous":
            traits[axis.name] = float(axis.low + u * (axis.high - axis.low))
        else:
            traits[axis.name] = axis.values[round(u * (len(axis.values) - 1))]
    return traits


def from_marginals(space, rng):
    """Independent draws from each axis's declared marginal (uniform when none)."""
    traits = {}
    for axis in space.axes:
        marginal = axis.marginal
        if axis.kind != "continuous":
            weights = np.array(
                [marginal.weights.get(str(v), 0.0) if marginal else 1.0 for v in axis.values]
            )
            traits[axis.name] = axis.values[
                int(rng.choice(len(axis.values), p=weights / weights.sum()))
            ]
        elif marginal is None or marginal.dist == "uniform":
            traits[axis.name] = float(rng.uniform(axis.low, axis.high))
        elif marginal.dist == "beta":
            traits[axis.name] = float(
                axis.low + rng.beta(marginal.a, marginal.b) * (axis.high - axis.low)
            )
        else:
            traits[axis.name] = float(
                np.clip(rng.normal(marginal.mean, marginal.sd), axis.low, axis.high)
            )
    return traits


def generate(space, n, rng, llm=None):
    sample = getattr(space, "reference_sample", None)
    personas = []
    attempts = 0
    while len(personas) < n and attempts < 200 * n:
        attempts += 1
        traits = from_reference(space, sample, rng) if sample else from_marginals(space, rng)
        if space.is_feasible(traits):
            personas.append({"id": f"matched-{len(personas)}", "traits": traits})
    return personas
