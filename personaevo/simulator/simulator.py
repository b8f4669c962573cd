"""The :class:`Simulator`: a language model playing users, one batch of conversations at
a time, and the :class:`IntentPlanner` that picks each turn's intent.

The planner (seeded per conversation) decides what the user does next from the goal
state, the agent's last line and the traits, in this order:

1. the last turn the budget allows, or every task objective and requirement Complete:
   ``end``;
2. the first turn: ``request``;
3. the agent asked a question (``?``) while a requirement is not Complete: ``inform``;
   a question otherwise: ``clarify``;
4. the agent completed an item on its last line: ``confirm`` with probability 1/2;
5. the agent did not move the goal state: ``complain`` with probability ``p_complain``
   (0.5 for a user with a trait value in :data:`IMPATIENT`, else 0.15);
6. ``express_emotion`` with probability ``p_emotion`` (0.3 for a trait value in
   :data:`EMOTIONAL`, else 0.1);
7. otherwise ``request``.

When the choice is not among the allowed intents, the first allowed one of ``request,
inform, clarify, confirm, complain, express_emotion, change_goal, end`` is used instead.
``change_goal`` is never chosen by these rules: it appears only when a caller asks for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from personaevo.llm import LLM, Message, SamplingParams
from personaevo.simulator.conditioning import WINDOW, Turn, clean_line, simulator_messages
from personaevo.simulator.goals import GoalState, Status, UserGoal
from personaevo.simulator.intents import Intent, parse_intent
from personaevo.simulator.profiles import Profile

IMPATIENT = frozenset(
    {"very_low", "angry", "frustrated", "hostile", "crisis", "distrustful", "catastrophizing"}
)
EMOTIONAL = frozenset(
    {"anxious", "grieving", "angry", "frustrated", "severe", "crisis", "catastrophizing"}
)
_FALLBACK = (
    Intent.REQUEST,
    Intent.INFORM,
    Intent.CLARIFY,
    Intent.CONFIRM,
    Intent.COMPLAIN,
    Intent.EXPRESS_EMOTION,
    Intent.CHANGE_GOAL,
    Intent.END,
)


@dataclass
class Session:
    """One conversation in progress."""

    id: str
    profile: Profile
    goal: UserGoal
    state: GoalState
    rng: np.random.Generator
    history: list[Turn] = field(default_factory=list)
    done: bool = False
    stop_reason: str | None = None

    @property
    def user_turns(self) -> int:
        return sum(t.role == "user" for t in self.history)

    def user_lines(self) -> list[str]:
        return [t.text for t in self.history if t.role == "user"]


def parse_intents(names: Sequence[str] | None, where: str = "intents") -> tuple[Intent, ...]:
    """Allowed intents from names (all of them when ``names`` is empty)."""
    if not names:
        return tuple(Intent)
    return tuple(dict.fromkeys(parse_intent(n, where) for n in names))


class IntentPlanner:
    """Picks each user turn's intent (see the module docstring)."""

    def __init__(self, allowed: Sequence[Intent | str] | None = None) -> None:
        self.allowed = parse_intents([str(i) for i in allowed] if allowed else None)

    def _allowed(self, intent: Intent) -> Intent:
        if intent in self.allowed:
            return intent
        return next(i for i in _FALLBACK if i in self.allowed)

    def next_intent(self, session: Session, max_turns: int) -> Intent:
        state, rng = session.state, session.rng
        values = {str(v) for v in session.profile.traits.values()}
        p_complain = 0.5 if values & IMPATIENT else 0.15
        p_emotion = 0.3 if values & EMOTIONAL else 0.1
        draw = rng.random()  # one draw per turn keeps the stream aligned across rules
        if session.user_turns >= max_turns - 1 or state.tasks_complete():
            return self._allowed(Intent.END)
        if session.user_turns == 0:
            return self._allowed(Intent.REQUEST)
        last_agent = next((t for t in reversed(session.history) if t.role == "agent"), None)
        text = last_agent.text if last_agent else ""
        if "?" in text:
            missing = any(
                i.kind == "requirements" and i.status != Status.COMPLETE for i in state.items
            )
            return self._allowed(Intent.INFORM if missing else Intent.CLARIFY)
        before = _previous_statuses(session)
        completed_now = before is not None and any(
            s == Status.COMPLETE and b != Status.COMPLETE
            for s, b in zip((i.status for i in state.items), before, strict=True)
        )
        if completed_now and draw < 0.5:
            return self._allowed(Intent.CONFIRM)
        if not completed_now and draw < p_complain:
            return self._allowed(Intent.COMPLAIN)
        if draw > 1 - p_emotion:
            return self._allowed(Intent.EXPRESS_EMOTION)
        return self._allowed(Intent.REQUEST)


def _previous_statuses(session: Session) -> list[str] | None:
    """Goal-item statuses before the agent's last line (after the user's last line)."""
    for turn in reversed(session.history):
        if turn.role == "user":
            return turn.statuses
    return None


class Simulator:
    """A language model playing users conditioned on profile, goal state and intent.

    ``reply`` takes a batch of sessions (each ending with an agent turn) and their
    intents, and returns each user's next line, cleaned by
    :func:`~personaevo.simulator.conditioning.clean_line`."""

    def __init__(
        self,
        llm: LLM,
        params: SamplingParams | None = None,
        window: int = WINDOW,
        planner: IntentPlanner | None = None,
    ) -> None:
        self.llm = llm
        self.params = params or SamplingParams(max_tokens=48, temperature=0.7)
        self.window = window
        self.planner = planner or IntentPlanner()
        self.name = llm.name

    def messages(self, session: Session, intent: Intent) -> list[Message]:
        return simulator_messages(
            session.profile, session.goal, session.state, session.history, intent, self.window
        )

    def reply(
        self, sessions: Sequence[Session], intents: Sequence[Intent], seed: int | None = None
    ) -> list[str]:
        conversations = [self.messages(s, i) for s, i in zip(sessions, intents, strict=True)]
        params = self.params if seed is None else self.params.model_copy(update={"seed": seed})
        return [clean_line(c.text) for c in self.llm.chat(conversations, params)]

    def start(self, session_id: str, profile: Profile, goal: UserGoal, seed: int) -> Session:
        """A new session (the agent's greeting is added by the rollout)."""
        digest = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "little")
        return Session(
            id=session_id,
            profile=profile,
            goal=goal,
            state=GoalState.initial(goal),
            rng=np.random.default_rng([seed, digest]),
        )
