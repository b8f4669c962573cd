"""Rollouts: multi-turn conversations between a simulator and an agent, tracked turn by
turn, saved as JSONL.

A conversation starts with the agent's greeting. Each round, every open conversation gets
its intent from the planner, the simulator writes all user lines in one batch, the judge
checks them and the goal states advance; conversations whose line holds ``###STOP###``
end (``stop_reason = "stop_marker"``); the agent answers the rest in one batch, and the
judge marks what the answers accomplished. After ``max_turns`` user turns a conversation
ends with ``stop_reason = "turn_budget"``.

Each line of the JSONL file is a :class:`ConversationRecord`: the profile and goal, every
turn with its intent and the goal-item statuses after it, the final alignment, and
``judgements``: how many judge verdicts tracked the goal state (user and agent lines) and
how many of them were unreadable (no information: they moved no status; records written
before this field read as zero).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from personaevo.errors import FileFieldError, not_a_file
from personaevo.simulator.agents import GREETING, Agent, view_for
from personaevo.simulator.conditioning import (
    Turn,
    known_facts,
    persona_text,
    simulator_messages,
    stopped,
)
from personaevo.simulator.goals import (
    BEHAVIOUR_KINDS,
    GoalState,
    ItemStatus,
    Status,
    UserGoal,
    after_agent,
)
from personaevo.simulator.goals import after_user as _after_user
from personaevo.simulator.intents import Intent
from personaevo.simulator.judges import Judge, UserLine
from personaevo.simulator.profiles import Profile
from personaevo.simulator.simulator import Session, Simulator
from personaevo.simulator.verdicts import JudgementCount


class ConversationRecord(BaseModel):
    """One finished conversation."""

    id: str
    seed: int
    simulator: str
    agent: str
    judge: str
    profile: Profile
    goal: UserGoal
    turns: list[Turn]
    stop_reason: str
    alignment: float
    progress: float
    judgements: JudgementCount = Field(default_factory=JudgementCount)

    def state_at(self, statuses: list[str]) -> GoalState:
        return state_from(self.goal, statuses)

    def user_turn_indices(self) -> list[int]:
        return [k for k, t in enumerate(self.turns) if t.role == "user"]


def state_from(goal: UserGoal, statuses: Sequence[str]) -> GoalState:
    """A goal state from the statuses saved with a turn."""
    return GoalState(
        items=[
            ItemStatus(kind=kind, text=item.text, status=Status(s))
            for (kind, item), s in zip(goal.items(), statuses, strict=True)
        ]
    )


def _statuses(state: GoalState) -> list[str]:
    return [str(i.status) for i in state.items]


def _judged_items(goal: UserGoal) -> list[int]:
    """Indices of the items a judge is asked about after an agent line (the task kinds)."""
    return [k for k, (kind, _) in enumerate(goal.items()) if kind not in BEHAVIOUR_KINDS]


def user_lines_for_judge(sessions: Sequence[Session], lines: Sequence[str]) -> list[UserLine]:
    return [
        UserLine(
            goal=s.goal,
            facts=known_facts(s.profile, s.goal),
            persona_text=persona_text(s.profile, s.goal),
            line=line,
        )
        for s, line in zip(sessions, lines, strict=True)
    ]


def run_conversations(
    simulator: Simulator,
    agent: Agent,
    judge: Judge,
    sessions: list[Session],
    max_turns: int,
    seed: int = 0,
) -> list[ConversationRecord]:
    """Play every session to its end (see the module docstring); returns the records in
    the order of ``sessions``."""
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    tracked = {id(s): JudgementCount() for s in sessions}
    for session in sessions:
        session.history.append(Turn(role="agent", text=GREETING, statuses=_statuses(session.state)))
    for round_ in range(max_turns):
        active = [s for s in sessions if not s.done]
        if not active:
            break
        intents = [simulator.planner.next_intent(s, max_turns) for s in active]
        lines = simulator.reply(active, intents, seed=seed * 1000 + round_)
        checks = judge.user_checks(user_lines_for_judge(active, lines))
        for session, intent, line, check in zip(active, intents, lines, checks, strict=True):
            session.state = _after_user(session.state, check)
            tracked[id(session)] += check.judgements
            session.history.append(
                Turn(role="user", text=line, intent=intent, statuses=_statuses(session.state))
            )
            if stopped(line):
                session.done, session.stop_reason = True, "stop_marker"
        waiting = [s for s in active if not s.done]
        if not waiting:
            continue
        views = [
            view_for(agent, s.goal.instructions.domain or "", s.history, s.rng, s.goal, s.state)
            for s in waiting
        ]
        replies = agent.respond(views)
        done = judge.agent_checks([(s.goal, r) for s, r in zip(waiting, replies, strict=True)])
        for session, reply, accomplished in zip(waiting, replies, done, strict=True):
            session.state = after_agent(session.state, accomplished)
            tracked[id(session)].add(accomplished[i] for i in _judged_items(session.goal))
            turn = Turn(role="agent", text=reply, statuses=_statuses(session.state))
            session.history.append(turn)
    records = []
    for session in sessions:
        records.append(
            ConversationRecord(
                id=session.id,
                seed=seed,
                simulator=simulator.name,
                agent=agent.name,
                judge=judge.name,
                profile=session.profile,
                goal=session.goal,
                turns=session.history,
                stop_reason=session.stop_reason or "turn_budget",
                alignment=session.state.alignment(),
                progress=session.state.progress(),
                judgements=tracked[id(session)],
            )
        )
    return records


def simulate(
    simulator: Simulator,
    agent: Agent,
    judge: Judge,
    pairs: Sequence[tuple[Profile, UserGoal]],
    conversations: int,
    max_turns: int,
    seed: int = 0,
    batch: int = 32,
) -> list[ConversationRecord]:
    """``conversations`` conversations, cycling through the (profile, goal) pairs, played
    ``batch`` at a time. Conversation ``i`` has id ``c{i}-{persona id}`` and its own
    seeded generator, so a seed gives the same conversations with any batch size when
    the models are deterministic."""
    if not pairs:
        raise ValueError("no (profile, goal) pairs to simulate")
    records: list[ConversationRecord] = []
    for lo in range(0, conversations, batch):
        sessions = []
        for i in range(lo, min(conversations, lo + batch)):
            profile, goal = pairs[i % len(pairs)]
            sessions.append(simulator.start(f"c{i}-{profile.persona_id}", profile, goal, seed))
        records += run_conversations(simulator, agent, judge, sessions, max_turns, seed + lo)
    return records


def write_records(path: str | Path, records: Iterable[ConversationRecord]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json() + "\n")
            count += 1
    return count


def read_records(path: str | Path) -> list[ConversationRecord]:
    path = Path(path)
    problem = not_a_file(path, "rollout file")
    if problem:
        raise FileFieldError(path, "(file)", problem)
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ConversationRecord.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as err:
            reason = f"not a conversation record: {err}"
            raise FileFieldError(path, f"line {lineno}", reason) from None
    return records


def turn_prompts(record: ConversationRecord, window: int, max_turns: int) -> list[dict]:
    """One training row per user turn: the simulator's input before the turn, what the
    rewards need (see :mod:`personaevo.simulator.rewards`) and the ``line`` the user said."""
    rows = []
    facts = known_facts(record.profile, record.goal)
    text = persona_text(record.profile, record.goal)
    earlier: list[str] = []
    user_turn = 0
    for k, turn in enumerate(record.turns):
        if turn.role != "user":
            continue
        before = record.turns[k - 1]
        state = record.state_at(before.statuses or [])
        intent = turn.intent or Intent.REQUEST
        messages = simulator_messages(
            record.profile, record.goal, state, record.turns[:k], intent, window
        )
        rows.append(
            {
                "prompt": [m.model_dump() for m in messages],
                "intent": str(intent),
                "facts": facts,
                "persona_text": text,
                "goal": record.goal,
                "statuses": list(before.statuses or []),
                "earlier": list(earlier),
                "turn": user_turn,
                "max_turns": max_turns,
                "conversation": record.id,
                "persona_id": record.profile.persona_id,
                "kind": "turn",
                "line": turn.text,
            }
        )
        earlier.append(turn.text)
        user_turn += 1
    return rows
