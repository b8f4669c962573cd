"""A covering array over the axis bins, as a test engineer would build it: every
feasible pair of bins (STRENGTH = 2) appears in at least one persona. Rows come from
allpairspy with a filter that rejects rows breaking a constraint; further passes over
shuffled bin orders add rows until n personas exist. Continuous axes are cut into their
grid bins and a value is drawn inside the bin."""

from allpairspy import AllPairs

STRENGTH = 2


def axis_bins(axis):
    """The bin labels of an axis: its values, or bin indices for continuous axes."""
    if axis.kind == "continuous":
        return list(range(axis.bins))
    return list(axis.values)


def value_in_bin(axis, label, rng):
    if axis.kind != "continuous":
        return label
    width = (axis.high - axis.low) / axis.bins
    return float(axis.low + (label + rng.uniform(0.05, 0.95)) * width)


def generate(space, n, rng, llm=None):
    axes = list(space.axes)
    names = [axis.name for axis in axes]

    def partial_ok(row):
        # A partial row is kept unless a constraint whose axes are all assigned fails.
        assigned = {names[i]: value_in_bin(axes[i], row[i], rng) for i in range(len(row))}
        for constraint in space.constraints:
            if constraint.axes <= assigned.keys():
                if constraint.forbid is not None:
                    if space.conditions_hold(constraint.forbid, assigned):
                        return False
                elif space.conditions_hold(constraint.when, assigned) and not space.conditions_hold(
                    constraint.then, assigned
                ):
                    return False
        return True

    personas = []
    passes = 0
    while len(personas) < n and passes < 50:
        passes += 1
        bins = []
        for axis in axes:
            labels = axis_bins(axis)
            order = rng.permutation(len(labels))
            bins.append([labels[i] for i in order])
        for row in AllPairs(bins, filter_func=partial_ok, n=STRENGTH):
            traits = {names[i]: value_in_bin(axes[i], row[i], rng) for i in range(len(axes))}
            if space.is_feasible(traits):
                personas.append({"id": f"pairwise-{len(personas)}", "traits": traits})
            if len(personas) >= n:
                break
    return personas
