"""Two stages, as in the published persona generators.

Stage 1 places ``n`` personas in the trait space: a scrambled Sobol sequence (drawn from
``rng``), with a share of the coordinates pushed to the ends of their axis so that the
corners are visited, infeasible points skipped. Stage 2 asks the language model, in one
batched call, to write each persona's first-person description and a few profile facts
that fit its trait values (quoting the axis scores and anchors). A reply that cannot be
read keeps its persona with a description written from the axes' anchors; so does every
persona when there is no language model (``llm=None``) or the call fails.
"""

import json
import math
import re

from scipy.stats import qmc

EDGE_SHARE = 0.15  # chance that a coordinate is pushed to one end of its axis
MAX_TOKENS = 180  # new tokens per reply: a description and a one-line profile
TEMPERATURE = 0.9
CHUNK = 128  # conversations per language-model call (one call when n <= CHUNK)
MAX_DESCRIPTION = 1500  # characters kept of a description
MAX_FACTS = 8  # profile facts kept

SYSTEM = "You write believable personas for testing conversational AI systems."


def coordinate(u, rng):
    """A Sobol coordinate, or one end of the axis with probability EDGE_SHARE."""
    if rng.random() < EDGE_SHARE:
        return 0.0 if u < 0.5 else 0.999999
    return u


def value_at(axis, u):
    """Map u in [0, 1) onto an axis: linearly, or into equal slices of its values."""
    if axis.kind == "continuous":
        return float(axis.low + u * (axis.high - axis.low))
    k = len(axis.values)
    return axis.values[min(int(u * k), k - 1)]


def place(space, n, rng):
    """Stage 1: n feasible trait mappings."""
    engine = qmc.Sobol(d=len(space.axes), scramble=True, seed=rng)
    placed = []
    batch = 64
    drawn = 0
    while len(placed) < n and drawn < 200 * n:
        drawn += batch
        for point in engine.random(batch):
            traits = {
                axis.name: value_at(axis, coordinate(u, rng))
                for axis, u in zip(space.axes, point, strict=True)
            }
            if space.is_feasible(traits) and len(placed) < n:
                placed.append(traits)
        batch *= 2
    return placed


def score(axis, value):
    """Position on the axis from 0 (low end) to 100 (high end); None for categories."""
    if axis.kind == "continuous":
        return round(100 * (value - axis.low) / (axis.high - axis.low))
    if axis.kind == "ordinal":
        k = len(axis.values)
        return round(100 * axis.values.index(value) / max(k - 1, 1))
    return None


def trait_line(axis, value):
    """One trait for the prompt: its value, score and the anchor of the nearer end."""
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    points = score(axis, value)
    if points is None:
        return f"- {axis.name}: {shown}"
    anchor = axis.low_anchor if points < 50 else axis.high_anchor
    quoted = f'; {"low" if points < 50 else "high"} end: "{anchor}"' if anchor else ""
    return f"- {axis.name}: {shown} (score {points}{quoted})"


def conversation(space, traits):
    lines = [trait_line(axis, traits[axis.name]) for axis in space.axes]
    prompt = (
        f"Population: {space.context}\n"
        "Traits (scores run from 0 at the low end of an axis to 100 at the high end):\n"
        + "\n".join(lines)
        + "\nWrite this person in the first person. Explore unusual and even "
        "counter-intuitive combinations: keep every trait as given, even where they seem to "
        "clash, and make the person believable. Answer in exactly this form:\n"
        "DESCRIPTION: <three to five sentences>\n"
        'PROFILE: {"name": "...", "occupation": "...", <two to four more short facts>}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def template_description(space, traits):
    """A description written from the anchors, for when no model text is usable."""
    sentences = []
    for axis in space.axes:
        value = traits[axis.name]
        label = axis.name.replace("_", " ")
        points = score(axis, value)
        if points is not None and points <= 25 and axis.low_anchor:
            sentences.append(f"My {label} is low: {axis.low_anchor}")
        elif points is not None and points >= 75 and axis.high_anchor:
            sentences.append(f"My {label} is high: {axis.high_anchor}")
        else:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            sentences.append(f"My {label} is {shown}.")
    return " ".join(sentences)


def clean(text):
    text = " ".join(str(text).replace("\u0000", " ").split())
    return text[:MAX_DESCRIPTION]


def plain_fact(value):
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return clean(value)[:200]


def parse_profile(text):
    """A dict of facts from a JSON object, or from 'key: value' lines; {} if neither."""
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            data = json.loads(text[start : end + 1])
        except ValueError:
            data = None
        if isinstance(data, dict):
            facts = {}
            for key, value in data.items():
                if len(facts) < MAX_FACTS and str(key).strip():
                    facts[clean(key)[:60]] = plain_fact(value)
            return facts
    facts = {}
    for line in text.splitlines():
        match = re.match(r"\s*[-*]?\s*([A-Za-z][\w \-]{0,40}?)\s*:\s*(\S.*)$", line)
        if match and len(facts) < MAX_FACTS:
            facts[match.group(1).strip().lower()] = clean(match.group(2))[:200]
    return facts


def parse_reply(text):
    """(description, profile) from a reply; an empty description when unusable."""
    if not isinstance(text, str):
        return "", {}
    found = re.search(r"DESCRIPTION\s*:\s*(.*?)(?=PROFILE\s*:|$)", text, re.S | re.I)
    profile_at = re.search(r"PROFILE\s*:\s*(.*)$", text, re.S | re.I)
    profile = parse_profile(profile_at.group(1)) if profile_at else {}
    if found:
        description = clean(found.group(1))
    elif profile_at:
        description = clean(text[: profile_at.start()])
    else:
        description = clean(text)
    if len(description) < 20 or len(description.split()) < 4:
        description = ""
    return description, profile


def describe(space, placed, llm):
    """Stage 2: one reply per persona (or None where there is none)."""
    replies = [None] * len(placed)
    if llm is None:
        return replies
    for start in range(0, len(placed), CHUNK):
        chunk = placed[start : start + CHUNK]
        try:
            texts = llm.chat_batch(
                [conversation(space, traits) for traits in chunk],
                max_tokens=MAX_TOKENS,
                temperature=TEMPERATURE,
            )
        except Exception:  # the model is unreachable or refused: keep the template text
            break
        if isinstance(texts, list):
            for offset, text in enumerate(texts[: len(chunk)]):
                replies[start + offset] = text
    return replies


def generate(space, n, rng, llm=None):
    placed = place(space, n, rng)
    replies = describe(space, placed, llm)
    personas = []
    for i, (traits, reply) in enumerate(zip(placed, replies, strict=True)):
        description, profile = parse_reply(reply)
        persona = {
            "id": f"two-stage-{i}",
            "traits": traits,
            "description": description or template_description(space, traits),
        }
        if profile:
            persona["profile"] = profile
        personas.append(persona)
    return personas
