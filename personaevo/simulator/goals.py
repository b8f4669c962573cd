"""User goals decomposed as in UGST (Mehri et al. 2025), and the goal state tracked per turn.

A :class:`UserGoal` has tau2-bench's scenario fields (``persona``, and ``instructions`` with
``domain``, ``reason_for_call``, ``known_info``, ``unknown_info``, ``task_instructions``)
plus the UGST decomposition into five kinds of item:

* ``profile`` and ``policy`` items have the status **Aligned** or **Misaligned** (how the
  user must behave; a violation makes the item Misaligned for the rest of the conversation);
* ``task_objectives``, ``requirements`` and ``preferences`` have the status **Incomplete**,
  **Attempted** (the user asked for it) or **Complete** (the agent did it).

Two implicit items are always tracked: the profile item "keep to your profile facts"
(Misaligned when a user line contradicts the session profile) and, when the goal lists
unknown information, the policy item "do not make up what you do not know" (Misaligned
when a user line leaks it).

Each item may carry regular expressions (case-insensitive): ``mention`` (a user line that
matches attempts the item), ``complete_when`` (an agent line that matches accomplishes it)
and ``violated_if`` (a user line that matches violates it), and an ``agent_example`` (an
agent line that accomplishes it, which must match ``complete_when``; the scripted agent
says it). A judge decides each status
change (:mod:`personaevo.simulator.judges`); the rule judge uses these patterns. Only a
judge's ``yes`` moves a status: an unreadable answer (an LLM judge's reply that is neither
yes nor no) is no information and leaves the item as it was.

Scores of a state (``n`` items, values Aligned 1, Misaligned 0, Incomplete 0, Attempted
1/2, Complete 1):

* ``progress = (1/n) * sum(value)``, the per-turn progress signal;
* ``alignment = (1/n) * #(Aligned or Complete)``, UGST's final goal alignment.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from personaevo.simulator.verdicts import JudgementCount, Verdict

ItemKind = Literal["profile", "policy", "task_objectives", "requirements", "preferences"]
ITEM_KINDS: tuple[ItemKind, ...] = (
    "profile",
    "policy",
    "task_objectives",
    "requirements",
    "preferences",
)
BEHAVIOUR_KINDS = ("profile", "policy")
FACTS_ITEM = "Keep to your profile facts."
UNKNOWN_ITEM = "Do not make up the information you do not know."


class Status(StrEnum):
    ALIGNED = "Aligned"
    MISALIGNED = "Misaligned"
    INCOMPLETE = "Incomplete"
    ATTEMPTED = "Attempted"
    COMPLETE = "Complete"


_VALUE = {
    Status.ALIGNED: 1.0,
    Status.MISALIGNED: 0.0,
    Status.INCOMPLETE: 0.0,
    Status.ATTEMPTED: 0.5,
    Status.COMPLETE: 1.0,
}


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"invalid regular expression {pattern!r}: {err}") from None
    return patterns


class GoalItem(BaseModel):
    """One part of a goal, with optional cue patterns for the rule judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    mention: list[str] = Field(default_factory=list)
    complete_when: list[str] = Field(default_factory=list)
    violated_if: list[str] = Field(default_factory=list)
    agent_example: str | None = Field(
        None, description="An agent line that accomplishes the item (the scripted agent says it)."
    )

    _patterns = field_validator("mention", "complete_when", "violated_if")(_check_patterns)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        return {"text": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _example_completes(self) -> GoalItem:
        examples_ok = any(re.search(p, self.agent_example or "", re.I) for p in self.complete_when)
        if self.agent_example and self.complete_when and not examples_ok:
            raise ValueError(
                f"agent_example {self.agent_example!r} matches no complete_when pattern"
            )
        return self


class UnknownInfo(BaseModel):
    """Something the user does not know: it must not appear in the user's lines. A line
    leaks it when it matches one of ``patterns`` or contains ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    value: str | None = None
    patterns: list[str] = Field(default_factory=list)

    _patterns = field_validator("patterns")(_check_patterns)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        return {"text": data} if isinstance(data, str) else data


class Instructions(BaseModel):
    """tau2-bench's user instructions."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = None
    reason_for_call: str = Field(min_length=1)
    known_info: dict[str, str] = Field(default_factory=dict)
    unknown_info: list[UnknownInfo] = Field(default_factory=list)
    task_instructions: str = ""

    @field_validator("known_info", mode="before")
    @classmethod
    def _scalars(cls, value):
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value


class UserGoal(BaseModel):
    """A user scenario: who calls, why, what they know, and the UGST goal items."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    persona: str | None = None
    instructions: Instructions
    profile: list[GoalItem] = Field(default_factory=list)
    policy: list[GoalItem] = Field(default_factory=list)
    task_objectives: list[GoalItem] = Field(min_length=1)
    requirements: list[GoalItem] = Field(default_factory=list)
    preferences: list[GoalItem] = Field(default_factory=list)

    def items(self) -> list[tuple[ItemKind, GoalItem]]:
        """Every tracked item in order, the implicit ones included."""
        out: list[tuple[ItemKind, GoalItem]] = [("profile", GoalItem(text=FACTS_ITEM))]
        out += [("profile", item) for item in self.profile]
        if self.instructions.unknown_info:
            out.append(("policy", GoalItem(text=UNKNOWN_ITEM)))
        out += [("policy", item) for item in self.policy]
        for kind in ("task_objectives", "requirements", "preferences"):
            out += [(kind, item) for item in getattr(self, kind)]
        return out


class ItemStatus(BaseModel):
    kind: ItemKind
    text: str
    status: Status


class GoalState(BaseModel):
    """The status of every goal item after some turn."""

    items: list[ItemStatus]

    @classmethod
    def initial(cls, goal: UserGoal) -> GoalState:
        return cls(
            items=[
                ItemStatus(
                    kind=kind,
                    text=item.text,
                    status=Status.ALIGNED if kind in BEHAVIOUR_KINDS else Status.INCOMPLETE,
                )
                for kind, item in goal.items()
            ]
        )

    def progress(self) -> float:
        """Mean item value (Aligned/Complete 1, Attempted 1/2, other 0)."""
        return sum(_VALUE[i.status] for i in self.items) / len(self.items)

    def alignment(self) -> float:
        """Share of items Aligned or Complete (UGST's goal alignment)."""
        good = sum(i.status in (Status.ALIGNED, Status.COMPLETE) for i in self.items)
        return good / len(self.items)

    def tasks_complete(self) -> bool:
        """Whether every task objective and requirement is Complete (preferences are not
        needed to end the conversation)."""
        return all(
            i.status == Status.COMPLETE
            for i in self.items
            if i.kind in ("task_objectives", "requirements")
        )

    def render(self) -> str:
        """Compact text for the simulator's input: ``[Status] text`` per item."""
        return " ".join(f"[{i.status}] {i.text}" for i in self.items)


class UserChecks(BaseModel):
    """What a judge found about one user line, per goal item (in :meth:`UserGoal.items`
    order). Every field is a :class:`~personaevo.simulator.verdicts.Verdict`: an
    unreadable one is no information (it changes no status). ``leaks_unknown`` is the
    three-valued "or" over the goal's unknown information; items a judge was not asked
    about (task items for ``violated``, behaviour items for ``attempted``) are ``NO``.
    ``judgements`` counts every verdict behind the fields and how many were unreadable."""

    contradicts_profile: Verdict = Verdict.NO
    leaks_unknown: Verdict = Verdict.NO
    attempted: list[Verdict]  # the line attempts the item (task kinds)
    violated: list[Verdict]  # the line violates the item (behaviour kinds)
    judgements: JudgementCount = Field(default_factory=JudgementCount)


def after_user(state: GoalState, checks: UserChecks) -> GoalState:
    """The goal state after a user line: task items move Incomplete -> Attempted when the
    line attempts them (``YES``; never back); behaviour items become Misaligned on a
    violation (the implicit facts item also on a profile contradiction, the implicit
    unknown-information item on a leak) and stay so. Only a ``YES`` moves a status: an
    unreadable check is no information and leaves the item as it was, exactly as ``NO``
    does (the statuses only ever move on evidence)."""
    items = []
    for k, item in enumerate(state.items):
        status = item.status
        if item.kind in BEHAVIOUR_KINDS:
            violations = [checks.violated[k]]
            if item.kind == "profile" and item.text == FACTS_ITEM:
                violations.append(checks.contradicts_profile)
            if item.kind == "policy" and item.text == UNKNOWN_ITEM:
                violations.append(checks.leaks_unknown)
            if Verdict.any_of(violations) is Verdict.YES:
                status = Status.MISALIGNED
        elif checks.attempted[k] is Verdict.YES and status == Status.INCOMPLETE:
            status = Status.ATTEMPTED
        items.append(item.model_copy(update={"status": status}))
    return GoalState(items=items)


def after_agent(state: GoalState, accomplished: list[Verdict]) -> GoalState:
    """The goal state after an agent line: task items it accomplishes (``YES``) become
    Complete; an unreadable check leaves the item as it was."""
    return GoalState(
        items=[
            item.model_copy(update={"status": Status.COMPLETE})
            if done is Verdict.YES and item.kind not in BEHAVIOUR_KINDS
            else item
            for item, done in zip(state.items, accomplished, strict=True)
        ]
    )
