"""Scrambled Sobol points (a low-discrepancy sequence) mapped onto the feasible region:
the stage-1 placement the published persona generators converged on."""

from scipy.stats import qmc


def value_at(axis, u):
    """Map a coordinate u in [0, 1) onto an axis: linearly for continuous axes, into
    equal slices for discrete ones."""
    if axis.kind == "continuous":
        return float(axis.low + u * (axis.high - axis.low))
    k = len(axis.values)
    return axis.values[min(int(u * k), k - 1)]


def generate(space, n, rng, llm=None):
    engine = qmc.Sobol(d=len(space.axes), scramble=True, seed=rng)
    personas = []
    batch = 64
    drawn = 0
    # Infeasible points are skipped: draw the sequence in doubling batches until n are
    # feasible, giving up after 200 draws per persona (as the rejection-sampling seeds do).
    while len(personas) < n and drawn < 200 * n:
        drawn += batch
        for point in engine.random(batch):
            traits = {
                axis.name: value_at(axis, u) for axis, u in zip(space.axes, point, strict=True)
            }
            if space.is_feasible(traits) and len(personas) < n:
                personas.append({"id": f"sobol-{len(personas)}", "traits": traits})
        batch *= 2
    return personas
