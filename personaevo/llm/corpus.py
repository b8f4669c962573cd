"""The tiny model's training corpus: chat conversations the project writes itself.

A *section* is a function ``(rng, n) -> list[conversation]`` (a conversation is a list of
:class:`~personaevo.llm.base.Message`). :data:`SECTIONS` maps a name to a :class:`Section`
(the function and its share of the corpus); :func:`register_section` adds one, so the
component that owns a prompt format (the questionnaire assessor, the user simulator) can
teach the tiny model exactly that format. :func:`build_corpus` draws
``round(n · weight / Σ weights)`` conversations from each section with one seeded
generator per section and shuffles them, so a seed gives the same corpus.

The built-in sections share the prompt formats defined here, which other components import
rather than copy:

* ``persona_descriptions`` -- :func:`describe_request` (traits in) → :func:`describe_persona`
  (a description written from the axes' levels and low/high anchor texts);
* ``likert`` -- :func:`likert_messages`: a system turn "You are this person. <description>",
  one statement and "Answer with a single number 1-5", and an assistant turn with one digit
  consistent with the persona's position on the statement's axis (:func:`likert_answer`);
* ``simulator_turns`` -- a simulated user's profile, goal and the agent's last message with
  an intent, answered by a short user utterance that ends with :data:`STOP_MARKER` when the
  intent is ``end``.

Every persona is drawn uniformly over the axes' values of a built-in space and kept only
when feasible.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from personaevo.llm.base import Message
from personaevo.spaces import (
    ContinuousAxis,
    OrdinalAxis,
    TraitSpace,
    builtin_space_names,
    load_space,
)

__all__ = [
    "LIKERT_INSTRUCTION",
    "SECTIONS",
    "STOP_MARKER",
    "Section",
    "build_corpus",
    "corpus_fingerprint",
    "corpus_spaces",
    "describe_persona",
    "describe_request",
    "likert_answer",
    "likert_messages",
    "register_section",
    "sample_persona",
    "section_conversations",
]

Conversation = list[Message]
SectionFn = Callable[[np.random.Generator, int], list[Conversation]]

LIKERT_INSTRUCTION = (
    "How well does this statement describe you? "
    "Answer with a single number 1-5 (1 = strongly disagree, 5 = strongly agree)."
)
STOP_MARKER = "###STOP###"
LEVEL_WORDS = ("very low", "low", "moderate", "high", "very high")


@dataclass(frozen=True)
class Section:
    """A corpus section: ``fn(rng, n)`` returns ``n`` conversations; ``weight`` is its share."""

    fn: SectionFn
    weight: float = 1.0


SECTIONS: dict[str, Section] = {}


def register_section(name: str, fn: SectionFn, weight: float = 1.0) -> None:
    """Add (or replace) a corpus section. The tiny model's cache key covers every section's
    name, weight and a sample of its output, so a changed format triggers a rebuild."""
    if weight <= 0:
        raise ValueError(f"section {name!r}: weight must be > 0, got {weight}")
    SECTIONS[name] = Section(fn, float(weight))


def build_corpus(
    n: int, seed: int = 0, sections: dict[str, Section] | None = None
) -> list[Conversation]:
    """``n`` conversations (give or take rounding) from the sections, shuffled by ``seed``."""
    sections = SECTIONS if sections is None else sections
    total = sum(s.weight for s in sections.values())
    corpus: list[Conversation] = []
    for name, section in sorted(sections.items()):
        count = round(n * section.weight / total)
        corpus.extend(_draw(name, section, count, seed))
    order = np.random.default_rng(seed).permutation(len(corpus))
    return [corpus[i] for i in order]


def section_conversations(name: str, n: int, seed: int = 0) -> list[Conversation]:
    """``n`` conversations of one registered section, drawn as :func:`build_corpus` does."""
    return _draw(name, SECTIONS[name], n, seed)


def _draw(name: str, section: Section, n: int, seed: int) -> list[Conversation]:
    return section.fn(np.random.default_rng([seed, _stable_int(name)]), n)


def corpus_fingerprint(sections: dict[str, Section] | None = None, sample: int = 8) -> str:
    """SHA-256 over each section's name, weight and first ``sample`` conversations (seed 0):
    it changes when a section is added, removed, reweighted or writes a different format."""
    sections = SECTIONS if sections is None else sections
    digest = hashlib.sha256()
    for name, section in sorted(sections.items()):
        convs = _draw(name, section, sample, 0)
        payload = [[m.model_dump() for m in conv] for conv in convs]
        digest.update(json.dumps([name, section.weight, payload], sort_keys=True).encode())
    return digest.hexdigest()


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


# --- personas -------------------------------------------------------------------------


@functools.cache
def corpus_spaces() -> tuple[TraitSpace, ...]:
    """The built-in spaces the corpus draws personas from (loaded once)."""
    return tuple(load_space(name) for name in builtin_space_names())


def sample_persona(space: TraitSpace, rng: random.Random, tries: int = 200) -> dict:
    """Traits drawn uniformly per axis (continuous values rounded to integers when the range
    allows), redrawn until feasible."""
    for _ in range(tries):
        traits: dict[str, Any] = {}
        for axis in space.axes:
            if isinstance(axis, ContinuousAxis):
                x = rng.uniform(axis.low, axis.high)
                traits[axis.name] = round(x) if axis.high - axis.low >= 10 else round(x, 2)
            else:
                traits[axis.name] = rng.choice(axis.values)
        if not space.violated_constraints(traits):
            return traits
    raise RuntimeError(f"space {space.name!r}: no feasible persona in {tries} uniform draws")


def position(axis, value) -> float | None:
    """Where ``value`` sits on an ordered axis, in [0, 1]; None for categorical axes."""
    if isinstance(axis, ContinuousAxis):
        return (float(value) - axis.low) / (axis.high - axis.low)
    if isinstance(axis, OrdinalAxis):
        return axis.index(value) / (len(axis.values) - 1)
    return None


def _label(axis) -> str:
    return axis.name.replace("_", " ").capitalize()


def _value_text(value) -> str:
    return str(value).replace("_", " ")


def _anchor(text: str) -> str:
    return text.strip().rstrip(".")


STYLES = ("sheet", "first_person")


def describe_axis(axis, value, style: str = "sheet") -> str:
    """One sentence for one trait: its level and, near an end of the axis (the outer fifth),
    that end's anchor text. ``sheet``: ``Patience: very low. Gives up or escalates after the
    first delay.``; ``first_person``: ``My patience is very low. Gives up or …``"""
    u = position(axis, value)
    if isinstance(axis, ContinuousAxis):
        level = f"{LEVEL_WORDS[min(4, int(u * 5))]} ({value:g} on {axis.low:g}-{axis.high:g})"
    else:
        level = _value_text(value)
    if style == "sheet":
        head = f"{_label(axis)}: {level}."
    else:
        head = f"My {axis.name.replace('_', ' ')} is {level}."
    anchor = (
        "" if u is None else axis.low_anchor if u < 0.2 else axis.high_anchor if u > 0.8 else ""
    )
    return f"{head} {_anchor(anchor)}." if anchor else head


def describe_persona(
    space: TraitSpace, traits: dict, order: list[str] | None = None, style: str = "sheet"
) -> str:
    """The persona description the corpus teaches: one :func:`describe_axis` sentence per
    trait, in ``order`` (default: the space's axis order)."""
    axes = space.axis_by_name
    names = order if order is not None else [a.name for a in space.axes if a.name in traits]
    return " ".join(describe_axis(axes[name], traits[name], style) for name in names)


def describe_request(space: TraitSpace, traits: dict) -> list[Message]:
    """The request that asks for a persona description (the two-stage generator's stage 2)."""
    listed = ", ".join(f"{name}={_value_text(value)}" for name, value in traits.items())
    return [
        Message(
            role="system",
            content="You write short persona descriptions for testing conversational AI.",
        ),
        Message(
            role="user",
            content=f"Population: {space.context.strip()}\nTraits: {listed}\n"
            "Describe this persona.",
        ),
    ]


def likert_messages(persona: str, statement: str) -> list[Message]:
    """The questionnaire prompt: one statement, answered in persona with one digit."""
    return [
        Message(
            role="system",
            content=f"You are this person. {persona}\nAnswer as this person would.",
        ),
        Message(role="user", content=f'Statement: "{statement}"\n{LIKERT_INSTRUCTION}'),
    ]


def likert_answer(u: float, key: int, noise: float = 0.0) -> int:
    """The answer of a persona at position ``u`` ∈ [0, 1] to an item keyed ``key`` (+1: agreeing
    means a high position; -1: reverse-keyed): ``round(1 + 4u + noise)`` (or
    ``round(5 - 4u + noise)``), clipped to 1..5. The corpus draws ``noise`` ~ N(0, 0.3)."""
    target = 1 + 4 * u if key > 0 else 5 - 4 * u
    return min(5, max(1, round(target + noise)))


def _items(axis) -> list[tuple[str, int]]:
    """(statement, key) pairs for an ordered axis: its declared Likert items, its anchors
    and plain level statements."""
    label = axis.name.replace("_", " ")
    items = [(item.text, -1 if item.reverse else 1) for item in getattr(axis, "items", ())]
    items += [(f"My {label} is high.", 1), (f"My {label} is low.", -1)]
    if axis.high_anchor:
        items.append((f"{_anchor(axis.high_anchor)}.", 1))
    if axis.low_anchor:
        items.append((f"{_anchor(axis.low_anchor)}.", -1))
    return items


# --- sections -------------------------------------------------------------------------


def _py_rng(rng: np.random.Generator) -> random.Random:
    """A fast scalar generator seeded from the section's numpy generator."""
    return random.Random(int(rng.integers(2**63)))


def _persona_descriptions(rng: np.random.Generator, n: int) -> list[Conversation]:
    r, spaces = _py_rng(rng), corpus_spaces()
    out = []
    for _ in range(n):
        space = r.choice(spaces)
        traits = sample_persona(space, r)
        reply = describe_persona(space, traits)
        out.append([*describe_request(space, traits), Message(role="assistant", content=reply)])
    return out


def _likert(rng: np.random.Generator, n: int) -> list[Conversation]:
    r, spaces = _py_rng(rng), corpus_spaces()
    out = []
    for _ in range(n):
        space = r.choice(spaces)
        traits = sample_persona(space, r)
        axis = r.choice([a for a in space.axes if position(a, traits[a.name]) is not None])
        others = [a.name for a in space.axes if a.name != axis.name]
        # Many short personas (the lookup is easy to learn), some with every trait.
        extra = r.choice((0, 0, 1, 2, 3, len(others)))
        order = [axis.name, *r.sample(others, extra)]
        r.shuffle(order)
        persona = describe_persona(space, traits, order, r.choice(STYLES))
        statement, key = r.choice(_items(axis))
        answer = likert_answer(position(axis, traits[axis.name]), key, r.gauss(0, 0.3))
        out.append(
            [*likert_messages(persona, statement), Message(role="assistant", content=str(answer))]
        )
    return out


_GOALS = {
    "customer_support": [
        ("get a refund for order #W{n}", "order #W{n}"),
        ("exchange the shoes from order #W{n} for a larger size", "order #W{n}"),
        ("move flight {code} to a later date", "booking {code}"),
        ("cancel the reservation {code}", "reservation {code}"),
        ("find out where order #W{n} is", "order #W{n}"),
        ("add a checked bag to booking {code}", "booking {code}"),
    ],
    "mental_health_support": [
        ("talk about feeling anxious at night", "I can't sleep"),
        ("find ways to cope with stress at work", "my job"),
        ("vent about a fight with a friend", "my friend"),
        ("get help because everything feels too much", "all of it"),
    ],
    "big_five": [
        ("get advice on planning a trip", "the trip"),
        ("ask for help writing a cover letter", "the letter"),
        ("get a recipe for a quick dinner", "dinner"),
    ],
}
_AGENT = {
    "greet": "Hello, how can I help you today?",
    "state_goal": "What can I do for you?",
    "give_detail": "Could you give me more details?",
    "ask_question": "Is there anything you would like to know?",
    "complain": "I'm sorry, that is not possible.",
    "confirm": "I have made that change for you.",
    "thank": "Is there anything else?",
    "end": "Your request is complete. Anything else?",
}
_UTTERANCES = {
    "greet": ["Hi.", "Hello there.", "Hi, I need some help."],
    "state_goal": ["I want to {goal}.", "I need to {goal}.", "Can you help me {goal}?"],
    "give_detail": ["It is {detail}.", "Sure, {detail}.", "The details: {detail}."],
    "ask_question": ["How long will that take?", "Will that cost anything?", "Why is that?"],
    "complain": ["That is not acceptable.", "Why not? I was told otherwise.", "This is useless."],
    "confirm": ["Yes, please do that.", "Okay, that works.", "Yes."],
    "thank": ["Thank you.", "Thanks for your help.", "Great, thanks."],
    "end": ["No, that's all. Bye.", "That's everything, thanks.", "Nothing else. Goodbye."],
}


_STYLE_AXES = ("verbosity", "emotional_state", "engagement", "language_proficiency")


def _styled(text: str, traits: dict, rng: random.Random) -> str:
    """Colour an utterance by the traits the simulator format cares about."""
    verbosity = str(traits.get("verbosity", ""))
    if verbosity in ("terse", "brief"):
        text = text.split(",")[0].rstrip(".?!") + ("." if verbosity == "brief" else "")
    elif verbosity in ("verbose", "rambling"):
        text += " I have been trying to sort this out all week, and my day has been long."
    mood = str(traits.get("emotional_state", traits.get("engagement", "")))
    if mood in ("angry", "hostile"):
        text = text.upper() if rng.random() < 0.5 else text + " This is ridiculous!"
    elif mood in ("frustrated", "anxious", "guarded"):
        text += " Please hurry." if mood == "frustrated" else " I'm worried about this."
    if str(traits.get("language_proficiency", "")) == "beginner":
        text = " ".join(w for w in text.lower().split() if w not in ("the", "a", "is", "to"))
    return text


def _simulator_turns(rng: np.random.Generator, n: int) -> list[Conversation]:
    r = _py_rng(rng)
    spaces = [s for s in corpus_spaces() if s.name in _GOALS]
    out = []
    for _ in range(n):
        space = r.choice(spaces)
        traits = sample_persona(space, r)
        template, detail = r.choice(_GOALS[space.name])
        slots = {"n": r.randint(10000, 99999), "code": f"{r.randint(100, 999)}XK"}
        goal, detail = template.format(**slots), detail.format(**slots)
        intent = r.choice(list(_AGENT))
        line = r.choice(_UTTERANCES[intent]).format(goal=goal, detail=detail)
        line = _styled(line, traits, r)
        if intent == "end":
            line = f"{line} {STOP_MARKER}"
        shown = [a.name for a in space.axes if a.name in _STYLE_AXES]
        shown += r.sample([a.name for a in space.axes if a.name not in shown], r.randint(1, 3))
        profile = describe_persona(space, traits, [a.name for a in space.axes if a.name in shown])
        system = (
            "You are simulating a user talking to an assistant. Stay in character and write "
            f"only the user's next message.\nProfile: {profile}\nGoal: {goal}"
        )
        out.append(
            [
                Message(role="system", content=system),
                Message(role="user", content=f"Agent: {_AGENT[intent]}\nIntent: {intent}"),
                Message(role="assistant", content=line),
            ]
        )
    return out


register_section("persona_descriptions", _persona_descriptions, weight=0.5)
register_section("likert", _likert, weight=2.0)
register_section("simulator_turns", _simulator_turns, weight=1.0)
