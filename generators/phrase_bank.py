"""Persona text from phrase banks, no language model: the simple text-writing baseline.

Each persona gets independent uniform draws per axis (infeasible ones rejected), then a
description with one sentence per axis. An ordered axis's sentence comes from the phrase
bank of the band its position falls in (five equal bands from the low end to the high
end), filled with the axis's own low/high anchor texts; a categorical axis's sentence is
the choice's anchor text (or "<description>: <choice>."). The declared traits are where
the persona was placed; under ``--assess embedding`` or ``questionnaire`` only the text's
measured position counts.
"""

BAND_EDGES = (0.2, 0.4, 0.6, 0.8)  # positions splitting the five bands
LOW_BANK = (
    "{Low}.",
    "Without a doubt: {low}.",
    "Very much so: {low}.",
)
LEANING_LOW_BANK = (
    "Somewhat: {low}.",
    "A little of this: {low}.",
    "Leaning this way: {low}.",
)
MIDDLE_BANK = (
    "Neither '{low}' nor '{high}'.",
    "Somewhere in the middle between '{low}' and '{high}'.",
)
LEANING_HIGH_BANK = (
    "Somewhat: {high}.",
    "A little of this: {high}.",
    "Leaning this way: {high}.",
)
HIGH_BANK = (
    "{High}.",
    "Without a doubt: {high}.",
    "Very much so: {high}.",
)
BANKS = (LOW_BANK, LEANING_LOW_BANK, MIDDLE_BANK, LEANING_HIGH_BANK, HIGH_BANK)


def label(axis):
    return (axis.description.strip().rstrip(".") or axis.name.replace("_", " ")).strip()


def clause(text):
    """An anchor text as a clause: no final period, first letter lower-cased."""
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def ends(axis):
    """Low and high texts of an ordered axis: its anchors, else its end levels."""
    if axis.kind == "continuous":
        words = ("very low", "very high")
    else:
        words = (str(axis.values[0]).replace("_", " "), str(axis.values[-1]).replace("_", " "))
    low = axis.low_anchor or f"{label(axis)}: {words[0]}"
    high = axis.high_anchor or f"{label(axis)}: {words[1]}"
    return clause(low), clause(high)


def position(axis, value):
    """Where a value sits on its axis, from 0 (low end) to 1 (high end)."""
    if axis.kind == "continuous":
        return (value - axis.low) / (axis.high - axis.low)
    return axis.values.index(value) / (len(axis.values) - 1)


def band(u):
    return sum(u >= edge for edge in BAND_EDGES)


def sentence(axis, value, rng):
    """The sentence that tells where this persona sits on ``axis``."""
    if axis.kind == "categorical":
        anchor = axis.value_anchors.get(value, "")
        return anchor or f"{label(axis)}: {value.replace('_', ' ')}."
    low, high = ends(axis)
    bank = BANKS[band(position(axis, value))]
    template = bank[int(rng.integers(len(bank)))]
    return template.format(low=low, high=high, Low=capital(low), High=capital(high))


def capital(text):
    return text[:1].upper() + text[1:]


def draw(axis, rng):
    if axis.kind == "continuous":
        return float(rng.uniform(axis.low, axis.high))
    return axis.values[int(rng.integers(0, len(axis.values)))]


def generate(space, n, rng, llm=None):
    personas = []
    attempts = 0
    while len(personas) < n and attempts < 200 * n:
        attempts += 1
        traits = {axis.name: draw(axis, rng) for axis in space.axes}
        if not space.is_feasible(traits):
            continue
        text = " ".join(sentence(axis, traits[axis.name], rng) for axis in space.axes)
        personas.append({"id": f"phrase-{len(personas)}", "traits": traits, "description": text})
    return personas
