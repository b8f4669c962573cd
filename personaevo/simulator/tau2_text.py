"""The text inside tau2-bench's user scenarios, both ways: goals from scenarios, scenarios
from (profile, goal) pairs, and tau2's scenario text (what its user simulator receives)
parsed back. The models are in :mod:`personaevo.simulator.tau2`.

**A goal from a scenario** (:func:`goal_from_scenario`):

* ``domain``, ``reason_for_call`` and ``task_instructions`` are copied; instructions given
  as one string become the ``reason_for_call`` (no domain);
* ``known_info``: each line ``Your KEY is VALUE.`` becomes the fact ``key=VALUE`` (spaces
  in KEY become ``_``); all other lines are kept, in order, as the fact ``info``;
* ``unknown_info``: one unknown item per non-empty line;
* each sentence of ``reason_for_call`` is a task objective, except those starting with
  "If", "Unless", "In case", "Otherwise" or "Should", which are preferences (the first
  sentence is an objective whatever it says);
* ``persona``: when it is a persona text of this project (below), its ``Scenario:`` line is
  the goal's persona; any other persona text is the goal's persona as written.

**A persona text** (:func:`persona_text`) is what an exported task's ``persona`` holds,
in the labels of the simulator's own input (:mod:`personaevo.simulator.conditioning`)::

    Profile: name=Maria Lopez; age=34; occupation=nurse; location=Denver
    Traits: patience=very_low; emotional_state=angry
    About you: <the description, on one line>
    Scenario: <the goal's own persona text, when it has one>

:func:`parse_persona_text` reads it back (``None`` for any other text).

**Identity facts**: tau2's ``known_info`` often says who the user is ("You are Yusuf Rossi
in zip code 19122."). :func:`reconcile` gives a persona the name, zip code, e-mail and user
id that the goal's known information states, so a persona paired with such a task never
contradicts the account the agent will look up.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from personaevo.simulator.goals import GoalItem, Instructions, UnknownInfo, UserGoal
from personaevo.simulator.profiles import Profile
from personaevo.simulator.tau2 import Tau2Instructions, Tau2UserScenario

FREE_TEXT_KEY = "info"
_KNOWN_LINE = re.compile(r"^Your ([A-Za-z0-9][A-Za-z0-9_ -]{0,39}?) is (.+?)\.?$")
_CONDITIONAL = re.compile(r"^(?:if|unless|in case|otherwise|should)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z#\"'(])|\n\s*\n")
_LABELS = ("Profile", "Traits", "About you", "Scenario")
_INSTRUCTION_HEADERS = {
    "Reason for call:": "reason_for_call",
    "Known info:": "known_info",
    "Unknown info:": "unknown_info",
    "Task instructions:": "task_instructions",
}
_IDENTITY = (
    ("name", re.compile(r"\bYou are ([A-Z][a-zA-Z'-]+(?: [A-Z][a-zA-Z'-]+)+)")),
    ("zip_code", re.compile(r"\bzip code (?:is )?(\d{5})\b", re.IGNORECASE)),
    ("email", re.compile(r"\b([\w.+-]+@[\w-]+(?:\.[\w-]+)+)\b")),
    ("user_id", re.compile(r"\buser id is ([\w.-]+?)\.?(?:\s|$)", re.IGNORECASE)),
)


# --- known and unknown information ------------------------------------------------------


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())


def known_info_text(known: dict[str, str]) -> str | None:
    """``Your KEY is VALUE.`` per fact (``info`` verbatim); None when there is none."""
    if not known:
        return None
    lines = []
    for key, value in known.items():
        if key == FREE_TEXT_KEY:
            lines.append(str(value))
        else:
            lines.append(f"Your {key.replace('_', ' ')} is {_one_line(value)}.")
    return "\n".join(lines)


def known_info_from_text(text: str | None) -> dict[str, str]:
    """The facts of a ``known_info`` text (see the module docstring)."""
    facts: dict[str, str] = {}
    free: list[str] = []
    for line in (text or "").splitlines():
        match = _KNOWN_LINE.match(line.strip())
        if match:
            facts[match.group(1).strip().replace(" ", "_")] = match.group(2).strip()
        elif line.strip():
            if not free:
                facts[FREE_TEXT_KEY] = ""  # keeps the free text's place in the order
            free.append(line.rstrip())
    if free:
        facts[FREE_TEXT_KEY] = "\n".join(free)
    return facts


def unknown_info_text(unknown: list[UnknownInfo]) -> str | None:
    return "\n".join(_one_line(u.text) for u in unknown) if unknown else None


def unknown_info_from_text(text: str | None) -> list[UnknownInfo]:
    return [UnknownInfo(text=line.strip()) for line in (text or "").splitlines() if line.strip()]


def identity_facts(known: dict[str, str]) -> dict[str, str]:
    """Name, zip code, e-mail and user id as the known information states them."""
    facts = {k: v for k, v in known.items() if k in {key for key, _ in _IDENTITY}}
    text = known.get(FREE_TEXT_KEY, "")
    for key, pattern in _IDENTITY:
        match = pattern.search(text)
        if match and key not in facts:
            facts[key] = match.group(1)
    return facts


def reconcile(profile: Profile, goal: UserGoal) -> Profile:
    """``profile`` with the identity facts of ``goal``'s known information (see the module
    docstring); the same profile when the goal states none."""
    identity = identity_facts(goal.instructions.known_info)
    if all(profile.facts.get(k) == v for k, v in identity.items()):
        return profile
    return profile.model_copy(update={"facts": {**profile.facts, **identity}})


# --- goals from scenarios -----------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


class ScenarioError(ValueError):
    """A scenario that gives no goal: ``field`` (tau2's name, under ``user_scenario``) and
    the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def goal_from_scenario(scenario: Tau2UserScenario, goal_id: str) -> UserGoal:
    """The :class:`UserGoal` of one tau2 user scenario (see the module docstring); a
    :class:`ScenarioError` when its reason for the call is empty."""
    inst = scenario.instructions
    reason = inst if isinstance(inst, str) else inst.reason_for_call
    if not reason.strip():
        field = "instructions" if isinstance(inst, str) else "instructions.reason_for_call"
        raise ScenarioError(field, "empty: a goal needs a reason for the call")
    if isinstance(inst, str):
        structured = Tau2Instructions(
            domain="", reason_for_call=inst, task_instructions="", known_info=None
        )
        domain = None
    else:
        structured, domain = inst, inst.domain or None
    objectives, preferences = [], []
    for k, sentence in enumerate(sentences(structured.reason_for_call)):
        target = preferences if k > 0 and _CONDITIONAL.match(sentence) else objectives
        target.append(GoalItem(text=sentence))
    persona = scenario.persona
    parsed = parse_persona_text(persona) if persona else None
    if parsed is not None:
        persona = parsed[1]
    return UserGoal(
        id=goal_id,
        persona=persona,
        instructions=Instructions(
            domain=domain,
            reason_for_call=structured.reason_for_call,
            known_info=known_info_from_text(structured.known_info),
            unknown_info=unknown_info_from_text(structured.unknown_info),
            task_instructions=structured.task_instructions,
        ),
        task_objectives=objectives,
        preferences=preferences,
    )


# --- scenarios from pairs -----------------------------------------------------------------


def _pairs_text(mapping: dict[str, Any]) -> str:
    return "; ".join(f"{k}={_one_line(v).replace(';', ',')}" for k, v in mapping.items())


def persona_text(profile: Profile, scenario_persona: str | None = None) -> str:
    """The persona text of an exported task (see the module docstring)."""
    lines = [f"Profile: {_pairs_text(profile.facts)}"]
    if profile.traits:
        lines.append(f"Traits: {_pairs_text(profile.traits)}")
    if profile.description.strip():
        lines.append(f"About you: {_one_line(profile.description)}")
    if scenario_persona and scenario_persona.strip():
        lines.append(f"Scenario: {_one_line(scenario_persona)}")
    return "\n".join(lines)


def _value(text: str) -> str | int | float:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*(?:e-?\d+)?", text):
        return float(text)
    return text


def _parse_pairs(text: str) -> dict[str, Any] | None:
    out = {}
    for part in text.split("; "):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            return None
        out[key.strip()] = _value(value.strip())
    return out


def parse_persona_text(text: str) -> tuple[Profile, str | None] | None:
    """The profile and the scenario persona of a persona text written by
    :func:`persona_text`, or None when ``text`` is not one. The profile's id is
    ``persona-`` and the first 12 hex digits of the text's SHA-256."""
    fields: dict[str, str] = {}
    for line in text.strip().splitlines():
        label, sep, value = line.partition(": ")
        if not sep or label not in _LABELS or label in fields:
            return None
        fields[label] = value.strip()
    facts = _parse_pairs(fields.get("Profile", ""))
    traits = _parse_pairs(fields["Traits"]) if "Traits" in fields else {}
    if facts is None or traits is None:
        return None
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    profile = Profile(
        persona_id=f"persona-{digest}",
        traits=traits,
        description=fields.get("About you", ""),
        facts={k: v if isinstance(v, int) else str(v) for k, v in facts.items()},
    )
    return profile, fields.get("Scenario")


def instructions_for(goal: UserGoal) -> Tau2Instructions:
    inst = goal.instructions
    return Tau2Instructions(
        domain=inst.domain or "",
        reason_for_call=inst.reason_for_call,
        known_info=known_info_text(inst.known_info),
        unknown_info=unknown_info_text(inst.unknown_info),
        task_instructions=inst.task_instructions,
    )


def scenario_for(
    profile: Profile, goal: UserGoal, original: Tau2UserScenario | None = None
) -> Tau2UserScenario:
    """The user scenario of a pair: the persona text, and the instructions of the tau2
    scenario the goal came from (verbatim) or written from the goal."""
    instructions = original.instructions if original is not None else instructions_for(goal)
    return Tau2UserScenario(persona=persona_text(profile, goal.persona), instructions=instructions)


# --- tau2's scenario text, parsed back ----------------------------------------------------


def _dedent(line: str) -> str:
    return line[1:] if line.startswith("\t") else line


def _structured(lines: list[str]) -> Tau2Instructions | None:
    if not lines or not lines[0].startswith("Domain: "):
        return None
    fields: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        if line in _INSTRUCTION_HEADERS:
            current = _INSTRUCTION_HEADERS[line]
            fields[current] = []
        elif current is None:
            return None
        else:
            fields[current].append(_dedent(line))
    if "reason_for_call" not in fields or "task_instructions" not in fields:
        return None
    texts = {k: "\n".join(v) for k, v in fields.items()}
    return Tau2Instructions(domain=lines[0].removeprefix("Domain: "), **texts)


def parse_scenario_text(text: str) -> Tau2UserScenario | None:
    """The user scenario whose tau2 rendering (``str(UserScenario)``) is ``text``, or None
    when ``text`` is not one. ``parse_scenario_text(s.render())`` gives ``s`` back."""
    lines = text.strip("\n").split("\n")
    persona_lines: list[str] | None = None
    if lines and lines[0] == "Persona:":
        if "Instructions:" not in lines:
            return None
        end = lines.index("Instructions:")
        persona_lines, lines = [_dedent(x) for x in lines[1:end]], lines[end:]
    if not lines or lines[0] != "Instructions:":
        return None
    body = [_dedent(x) for x in lines[1:]]
    instructions: Tau2Instructions | str | None = _structured(body)
    if instructions is None:
        instructions = "\n".join(body)
    persona = "\n".join(persona_lines) if persona_lines is not None else None
    return Tau2UserScenario(persona=persona, instructions=instructions)
