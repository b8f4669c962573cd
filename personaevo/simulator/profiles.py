"""Session profiles: the structured facts a simulated user is conditioned on, and the fact
extractor the CPU judge checks lines with.

A :class:`Profile` is the persona's traits, its description and a flat dict of facts.
The four *core* facts ``name``, ``age``, ``occupation`` and ``location`` are always
present, so every built-in space gets a checkable profile. They are taken, in order, from

1. the persona's ``profile`` when it is a mapping (keys ``name``, ``age``,
   ``occupation``/``job``, ``location``/``city``; every other scalar key is kept as a fact);
2. what :func:`extract_facts` reads in the persona's ``description`` and a free-text
   ``profile`` (``"I'm 34"``, ``"a 72-year-old retired teacher"``, ``"I live in Lyon"``);
3. a deterministic derivation from the traits, seeded by ``(seed, persona id)``:

   * ``age``: an axis named ``age`` (rounded), else an axis whose name contains ``age``
     with band levels like ``"35-44"`` or ``"75+"`` (a uniform integer in the band; ``75+``
     means 75-90), else uniform in 18-80;
   * ``occupation``: an axis named ``employment``, ``occupation`` or ``job`` (``student``,
     ``retired``, ``unemployed``, ``unable_to_work`` -> "unable to work", ``employed`` -> a
     job from :data:`OCCUPATIONS`, ``none`` -> "student" under 18, else "homemaker"; any other
     value is used as written), else by age: under 18 "student", 67 and over "retired",
     otherwise a job from :data:`OCCUPATIONS`;
   * ``name``: a first and a last name from :data:`FIRST_NAMES` and :data:`LAST_NAMES`;
   * ``location``: a city from :data:`CITIES`.

A derived profile therefore never contradicts what the persona's own text states.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from personaevo.personas import Persona
from personaevo.spaces import ContinuousAxis, TraitSpace

CORE_FIELDS = ("name", "age", "occupation", "location")

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Priya", "Tom", "Fatima", "Lukas",
    "Grace", "Kenji", "Amara", "Diego", "Sofia", "Ivan", "Hannah", "Omar", "Mei", "Noah",
)  # fmt: skip
LAST_NAMES = (
    "Lopez", "Smith", "Khan", "Chen", "Petrova", "Garcia", "Patel", "Brown", "Haddad",
    "Weber", "Okafor", "Tanaka", "Mensah", "Rossi", "Novak", "Kim", "Silva", "Dubois",
)  # fmt: skip
OCCUPATIONS = (
    "nurse", "teacher", "accountant", "electrician", "cashier", "engineer", "driver",
    "chef", "pharmacist", "plumber", "designer", "farmer", "librarian", "mechanic",
    "lawyer", "barista", "programmer", "carpenter", "paramedic", "journalist",
)  # fmt: skip
CITIES = (
    "Denver", "Lyon", "Toronto", "Manchester", "Austin", "Dublin", "Melbourne", "Seattle",
    "Madrid", "Osaka", "Nairobi", "Boston", "Glasgow", "Lisbon", "Chicago", "Auckland",
)  # fmt: skip

_ALIASES = {"job": "occupation", "city": "location", "full_name": "name", "home": "location"}
_EMPLOYMENT = {
    "student": "student",
    "retired": "retired",
    "unemployed": "unemployed",
    "unable_to_work": "unable to work",
}


class Profile(BaseModel):
    """What a simulated user is: traits, description and facts (core facts always set)."""

    persona_id: str
    traits: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    facts: dict[str, str | int] = Field(default_factory=dict)
    rarity: float | None = None

    def core(self) -> dict[str, str | int]:
        return {k: self.facts[k] for k in CORE_FIELDS}

    def facts_text(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.facts.items())

    def traits_text(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.traits.items())


def _rng(seed: int, persona_id: str) -> np.random.Generator:
    digest = hashlib.sha256(persona_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _scalar(value: Any) -> str | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value) if value.is_integer() else str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def profile_from_persona(
    persona: Persona, space: TraitSpace | None = None, seed: int = 0
) -> Profile:
    """The :class:`Profile` of ``persona`` (see the module docstring for the derivation)."""
    facts: dict[str, str | int] = {}
    texts = [persona.description or ""]
    raw = persona.profile
    if isinstance(raw, dict):
        for key, value in raw.items():
            scalar = _scalar(value)
            if scalar is not None:
                facts[_ALIASES.get(key, key)] = scalar
    elif isinstance(raw, list):
        texts.extend(str(item) for item in raw)
    elif isinstance(raw, str):
        texts.append(raw)
    for text in texts:
        for key, value in extract_facts(text).items():
            facts.setdefault(key, value)
    if isinstance(facts.get("age"), str) and str(facts["age"]).isdigit():
        facts["age"] = int(facts["age"])
    rng = _rng(seed, persona.id)
    derived = _derive(persona.traits, space, rng)
    for key in CORE_FIELDS:
        facts.setdefault(key, derived[key])
    ordered = {k: facts[k] for k in CORE_FIELDS} | {
        k: v for k, v in facts.items() if k not in CORE_FIELDS
    }
    rarity = getattr(persona, "rarity", None)
    return Profile(
        persona_id=persona.id,
        traits=dict(persona.traits),
        description=persona.description or "",
        facts=ordered,
        rarity=float(rarity) if isinstance(rarity, int | float) else None,
    )


def _derive(traits: dict[str, Any], space: TraitSpace | None, rng: np.random.Generator) -> dict:
    age = _age(traits, space, rng)
    occupation = None
    for key in ("employment", "occupation", "job"):
        if key in traits:
            value = str(traits[key])
            occupation = _EMPLOYMENT.get(value, value.replace("_", " "))
            if value == "employed":
                occupation = str(rng.choice(OCCUPATIONS))
            elif value == "none":
                occupation = "student" if age < 18 else "homemaker"
            break
    if occupation is None:
        if age < 18:
            occupation = "student"
        elif age >= 67:
            occupation = "retired"
        else:
            occupation = str(rng.choice(OCCUPATIONS))
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    return {"name": name, "age": age, "occupation": occupation, "location": str(rng.choice(CITIES))}


_BAND = re.compile(r"^\s*(\d{1,3})\s*(?:-|to)\s*(\d{1,3})\s*$|^\s*(\d{1,3})\s*\+\s*$")


def _age(traits: dict[str, Any], space: TraitSpace | None, rng: np.random.Generator) -> int:
    value = traits.get("age")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value)
    axes = space.axis_by_name if space is not None else {}
    for name, value in traits.items():
        if "age" not in name or isinstance(axes.get(name), ContinuousAxis):
            continue
        match = _BAND.match(str(value))
        if match:
            low, high, plus = match.groups()
            lo, hi = (int(plus), 90) if plus else (int(low), int(high))
            return int(rng.integers(lo, hi + 1))
    return int(rng.integers(18, 81))


# --- the fact extractor (the CPU judge reads lines with it) ---

_NAME = r"([A-Z][a-z]+(?: [A-Z][a-z]+)?)"
_PLACE = r"([A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+)?)"
_OCCUPATION_WORDS = "|".join(sorted({*OCCUPATIONS, "student", "homemaker"}, key=len, reverse=True))
_NOT_AGE = r"(?:%|[.,]\d|percent|minutes?|mins?|hours?|days?|weeks?|months?|dollars?|times|euros?)"
_WORD = r"(?!(?:in|at|for|and|with|from|on|to|but)\b)[a-z]+"
_FACT_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("age", re.compile(r"\b(\d{1,3})[- ](?:years?|yrs?)[- ]old\b", re.IGNORECASE)),
    ("age", re.compile(r"\bmy age is (\d{1,3})\b", re.IGNORECASE)),
    ("age", re.compile(r"\b(?:i am|i'm|im)\s+(\d{1,3})\b(?!\s*" + _NOT_AGE + ")", re.I)),
    ("age", re.compile(r"\bage[:=]\s*(\d{1,3})\b", re.IGNORECASE)),
    ("name", re.compile(r"\b[Mm]y name is " + _NAME)),
    ("name", re.compile(r"\b(?:[Tt]his is|[Cc]all me) " + _NAME)),
    ("location", re.compile(r"\bI (?:live|reside) in " + _PLACE)),
    ("location", re.compile(r"\bI(?:'m| am) (?:from|based in) " + _PLACE)),
    ("occupation", re.compile(rf"\bI work as an? ({_WORD}(?: {_WORD})?)\b", re.IGNORECASE)),
    (
        "occupation",
        re.compile(r"\bI(?:'m| am) (?:an? |a retired )?(" + _OCCUPATION_WORDS + r")\b", re.I),
    ),
    ("occupation", re.compile(r"\bI(?:'m| am) (retired|unemployed)\b", re.IGNORECASE)),
    ("occupation", re.compile(r"\b\d{1,3}-year-old (?:retired )?(\w+)\b", re.IGNORECASE)),
]
_KNOWN_JOBS = frozenset({*OCCUPATIONS, "student", "homemaker", "retired", "unemployed"})
_TOKEN = r"[#\w@+-]+(?:\.[#\w@+-]+)*"
_MY_FACT = re.compile(
    rf"\b[Mm]y ([a-z][a-z ]{{1,24}}?) (?:is|was) ({_TOKEN}(?: (?!I\b)[A-Z]{_TOKEN})?)"
)
_STOPWORDS = {"a", "an", "the", "not", "very", "so", "really", "just", "still", "here"}


def extract_facts(text: str) -> dict[str, str | int]:
    """Facts that ``text`` states in the first person: core facts by pattern (the first
    match per fact wins) and any ``"my KEY is VALUE"`` (key in snake_case)."""
    facts: dict[str, str | int] = {}
    for key, pattern in _FACT_PATTERNS:
        if key in facts:
            continue
        match = pattern.search(text)
        if match:
            value = match.group(1)
            facts[key] = int(value) if key == "age" else value.strip()
    # "a 72-year-old woman" is not an occupation: keep only words known as jobs unless the
    # sentence said "I work as ...".
    if (
        "occupation" in facts
        and str(facts["occupation"]).lower() not in _KNOWN_JOBS
        and not re.search(r"\bI work as\b", text, re.IGNORECASE)
    ):
        del facts["occupation"]
    for match in _MY_FACT.finditer(text):
        key = re.sub(r"\W+", "_", match.group(1).strip().lower())
        value = match.group(2).strip().rstrip(".")
        if key in ("age", "name") or value.lower() in _STOPWORDS:
            continue
        facts.setdefault(_ALIASES.get(key, key), value)
    return facts


def _norm(value: Any) -> str:
    text = re.sub(r"[^\w#@.+ -]", "", str(value).lower()).strip()
    return re.sub(r"^(a|an|the) ", "", text)


def fact_conflicts(stated: dict[str, str | int], facts: dict[str, str | int]) -> list[str]:
    """The keys where ``stated`` disagrees with ``facts`` (keys absent from ``facts`` are
    not checked). A stated name conflicts unless all its words are in the true name."""
    conflicts = []
    for key, value in stated.items():
        if key not in facts:
            continue
        truth = facts[key]
        if key == "name":
            if not set(_norm(value).split()) <= set(_norm(truth).split()):
                conflicts.append(key)
        elif key == "age":
            if str(value) != str(truth):
                conflicts.append(key)
        elif _norm(value) != _norm(truth):
            conflicts.append(key)
    return conflicts
