"""Persona text from phrase banks on scrambled Sobol placements: the stratified
text-writing baseline.

Stage 1 places the personas on a scrambled Sobol sequence (drawn from ``rng``) mapped
onto the axes, infeasible points skipped, as ``sobol.py`` does. Stage 2 writes one
sentence per axis: an ordered axis's position picks one of five bands, and the band's
phrase is built from the axis's own low/high anchor texts (the strongest wording at the
ends, "neither ... nor ..." in the middle); a categorical axis's sentence is the choice's
anchor text (or "<description>: <choice>."). Under ``--assess embedding`` or
``questionnaire`` only the text's measured position counts.
"""

from scipy.stats import qmc

BAND_EDGES = (0.2, 0.4, 0.6, 0.8)  # positions splitting the five bands
PHRASES = (
    "{Low}.",
    "Somewhat: {low}.",
    "Neither '{low}' nor '{high}'.",
    "Somewhat: {high}.",
    "{High}.",
)


def label(axis):
    return (axis.description.strip().rstrip(".") or axis.name.replace("_", " ")).strip()


def clause(text):
    """An anchor text as a clause: no final period, first letter lower-cased."""
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def capital(text):
    return text[:1].upper() + text[1:]


def value_at(axis, u):
    """Map a coordinate u in [0, 1) onto an axis: linearly for continuous axes, into
    equal slices for discrete ones."""
    if axis.kind == "continuous":
        return float(axis.low + u * (axis.high - axis.low))
    k = len(axis.values)
    return axis.values[min(int(u * k), k - 1)]


def sentence(axis, value, u):
    """The sentence for coordinate ``u`` (the value's position) on ``axis``."""
    if axis.kind == "categorical":
        anchor = axis.value_anchors.get(value, "")
        return anchor or f"{label(axis)}: {value.replace('_', ' ')}."
    if axis.kind == "continuous":
        words = ("very low", "very high")
    else:
        words = (str(axis.values[0]).replace("_", " "), str(axis.values[-1]).replace("_", " "))
    low = clause(axis.low_anchor or f"{label(axis)}: {words[0]}")
    high = clause(axis.high_anchor or f"{label(axis)}: {words[1]}")
    band = sum(u >= edge for edge in BAND_EDGES)
    return PHRASES[band].format(low=low, high=high, Low=capital(low), High=capital(high))


def generate(space, n, rng, llm=None):
    engine = qmc.Sobol(d=len(space.axes), scramble=True, seed=rng)
    personas = []
    batch = 64
    drawn = 0
    while len(personas) < n and drawn < 200 * n:
        drawn += batch
        for point in engine.random(batch):
            traits = {a.name: value_at(a, u) for a, u in zip(space.axes, point, strict=True)}
            if not space.is_feasible(traits) or len(personas) >= n:
                continue
            text = " ".join(
                sentence(a, traits[a.name], u) for a, u in zip(space.axes, point, strict=True)
            )
            personas.append(
                {"id": f"phrase-sobol-{len(personas)}", "traits": traits, "description": text}
            )
        batch *= 2
    return personas
