"""The simulator's input: session profile, goal and goal state, history and turn intent.

RecLLM conditions a user simulator on a session-level profile and a turn-level intent as
plain text; UGST adds the goal state. The input is a chat conversation in which the
*simulated user speaks as the assistant role* and the agent's lines arrive as user
messages, so any chat model can play the user:

* ``system``: the instruction, then one line each for ``Profile:`` (the facts),
  ``Traits:``, ``About you:`` (the description, cut to :data:`DESCRIPTION_CHARS`),
  ``Scenario:`` (the goal's persona text), ``Reason:``, ``Task:``, ``Known:``,
  ``Unknown (never state):`` and ``Goal state:`` (``[Status] item`` for every goal item);
* the last :data:`WINDOW` messages of the history: agent lines as ``user`` messages
  ``"Agent: TEXT"``, the simulated user's own lines as ``assistant`` messages;
* the last agent message ends with ``"\\nIntent: NAME (DESCRIPTION)"``.

The completion is the user's next line; it ends with ``###STOP###`` when the user ends
the conversation. The tiny model's corpus teaches exactly this format
(:mod:`personaevo.simulator.corpus_section`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from personaevo.llm import Message
from personaevo.simulator.goals import GoalState, UserGoal
from personaevo.simulator.intents import DESCRIPTIONS, STOP, Intent
from personaevo.simulator.profiles import Profile

WINDOW = 6
DESCRIPTION_CHARS = 240
INSTRUCTION = (
    "You are a user talking to a support agent. Write only your next message as the user, "
    f"in character. End with {STOP} when your goal is done."
)


class Turn(BaseModel):
    """One line of a conversation. User turns carry their intent and the goal-item
    statuses after the line; agent turns the statuses after the reply."""

    role: Literal["user", "agent"]
    text: str
    intent: Intent | None = None
    statuses: list[str] | None = None


def _pairs(mapping: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in mapping.items())


def system_text(profile: Profile, goal: UserGoal, state: GoalState) -> str:
    """The system message (see the module docstring)."""
    inst = goal.instructions
    lines = [INSTRUCTION, f"Profile: {profile.facts_text()}"]
    if profile.traits:
        lines.append(f"Traits: {profile.traits_text()}")
    if profile.description:
        text = profile.description.strip()
        if len(text) > DESCRIPTION_CHARS:
            text = text[:DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " ..."
        lines.append(f"About you: {text}")
    if goal.persona:
        lines.append(f"Scenario: {goal.persona}")
    lines.append(f"Reason: {inst.reason_for_call}")
    if inst.task_instructions:
        lines.append(f"Task: {inst.task_instructions}")
    if inst.known_info:
        lines.append(f"Known: {_pairs(inst.known_info)}")
    if inst.unknown_info:
        lines.append(f"Unknown (never state): {'; '.join(u.text for u in inst.unknown_info)}")
    lines.append(f"Goal state: {state.render()}")
    return "\n".join(lines)


def agent_message(text: str, intent: Intent | None = None) -> str:
    body = f"Agent: {text}"
    return f"{body}\nIntent: {intent} ({DESCRIPTIONS[intent]})" if intent is not None else body


def simulator_messages(
    profile: Profile,
    goal: UserGoal,
    state: GoalState,
    history: list[Turn],
    intent: Intent,
    window: int = WINDOW,
) -> list[Message]:
    """The simulator's input for its next line; ``history`` must end with an agent turn."""
    if not history or history[-1].role != "agent":
        raise ValueError("the simulator speaks after an agent turn; history must end with one")
    shown = history[-window:] if window > 0 else history[-1:]
    messages = [Message(role="system", content=system_text(profile, goal, state))]
    for k, turn in enumerate(shown):
        if turn.role == "agent":
            last = k == len(shown) - 1
            content = agent_message(turn.text, intent if last else None)
            messages.append(Message(role="user", content=content))
        else:
            messages.append(Message(role="assistant", content=turn.text))
    return messages


def known_facts(profile: Profile, goal: UserGoal) -> dict[str, str | int]:
    """What the simulated user knows: the profile facts and the goal's known information."""
    return {**profile.facts, **goal.instructions.known_info}


def persona_text(profile: Profile, goal: UserGoal) -> str:
    """Free text about the user, for an LLM judge."""
    parts = [profile.traits_text(), profile.description, goal.persona or ""]
    return " ".join(p for p in parts if p)


def clean_line(text: str) -> str:
    """A completion as a user line: the first paragraph, cut before a line that starts a
    new role (``Agent:``, ``Intent:``, ...), stripped; a stop marker anywhere is kept."""
    text = text.strip()
    stop = STOP in text
    text = text.replace(STOP, " ").strip()
    text = text.split("\n\n")[0].strip()
    text = re.split(r"\n\s*(?:Agent|Intent|User|Customer)\s*:", text)[0].strip()
    for prefix in ("User:", "Customer:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    return f"{text} {STOP}".strip() if stop else text


def stopped(text: str) -> bool:
    return STOP in text
