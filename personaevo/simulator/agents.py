"""The agents a simulated user talks to: a scripted one for CPU runs and tests, and any
language model.

An agent answers a batch of conversations at once (:meth:`Agent.respond`); every
conversation starts with the agent's :data:`GREETING`. What an agent sees is an
:class:`AgentView` built by :func:`view_for`: the conversation so far, the goal's domain
and a seeded generator, plus the user's goal and goal state only for an agent whose
``reads_goal`` is true. A fair agent (:class:`LLMAgent`) gets ``goal = state = None``, so
it cannot use what a real support agent would not know.

:class:`ScriptedAgent` reads the user's goal state (it is a test double, not a fair
agent). After each user line it

1. says the ``agent_example`` of the first requirement the user has just attempted,
   which accomplishes it ("Thank you, I found your order.");
2. else, when an objective is Attempted and every requirement is Complete, says the
   ``agent_example`` of that objective (``"Done: ITEM."`` when there is none);
3. else, when an objective is Attempted but a requirement is not, asks for the details;
4. else asks what the user needs.

With probability ``refusal`` (seeded per conversation and turn) it stalls instead
("I'm sorry, I can't do that right now."), so that conversations differ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personaevo.llm import LLM, Message, SamplingParams
from personaevo.simulator.conditioning import Turn
from personaevo.simulator.goals import GoalState, Status, UserGoal

GREETING = "Hello, how can I help you today?"
ASK_DETAILS = "I can look into that. Could you give me the details I need?"
ASK_NEED = "Could you tell me what you need?"
STALL = "I'm sorry, I can't do that right now."


@dataclass
class AgentView:
    """What an agent sees of one conversation: ``goal`` and ``state`` are None for an
    agent that does not read the goal (see :func:`view_for`)."""

    domain: str
    history: list[Turn]
    rng: np.random.Generator
    goal: UserGoal | None = None
    state: GoalState | None = None


class Agent(ABC):
    name = "agent"
    reads_goal = False
    """Whether the agent is shown the user's goal and goal state (a test double only)."""

    @abstractmethod
    def respond(self, views: Sequence[AgentView]) -> list[str]:
        """The agent's next line in each conversation (the last turn is the user's)."""


class ScriptedAgent(Agent):
    """A deterministic, goal-aware agent (see the module docstring)."""

    name = "scripted"
    reads_goal = True

    def __init__(self, refusal: float = 0.0) -> None:
        if not 0 <= refusal <= 1:
            raise ValueError(f"refusal must be in [0, 1], got {refusal}")
        self.refusal = refusal

    def respond(self, views: Sequence[AgentView]) -> list[str]:
        return [self._one(v) for v in views]

    def _one(self, view: AgentView) -> str:
        if self.refusal and view.rng.random() < self.refusal:
            return STALL
        if view.goal is None or view.state is None:
            raise ValueError("the scripted agent needs the goal and its state in its view")
        items = view.goal.items()
        statuses = view.state.items
        attempted = [
            (kind, item)
            for (kind, item), s in zip(items, statuses, strict=True)
            if s.status == Status.ATTEMPTED
        ]
        for kind, item in attempted:
            if kind == "requirements":
                return item.agent_example or f"Done: {item.text}."
        requirements_done = all(
            s.status == Status.COMPLETE for s in statuses if s.kind == "requirements"
        )
        for kind, item in attempted:
            if kind in ("task_objectives", "preferences"):
                if requirements_done:
                    return item.agent_example or f"Done: {item.text}."
                return ASK_DETAILS
        return ASK_NEED


AGENT_SYSTEM = (
    "You are a customer-support agent. Help the customer with their request. Be brief and polite."
)


def view_for(
    agent: Agent,
    domain: str,
    history: list[Turn],
    rng: np.random.Generator,
    goal: UserGoal,
    state: GoalState,
) -> AgentView:
    """The view of one conversation that ``agent`` is allowed: the goal and its state only
    when ``agent.reads_goal``."""
    if agent.reads_goal:
        return AgentView(domain, history, rng, goal, state)
    return AgentView(domain, history, rng)


def agent_messages(system: str, view: AgentView) -> list[Message]:
    """The chat an LLM agent answers: ``system`` plus ``" Domain: D."`` when the goal has a
    domain, then the agent's own lines as ``assistant`` and the user's as ``user`` messages
    (a stop marker removed). Nothing of the goal but its domain."""
    content = system + (f" Domain: {view.domain}." if view.domain else "")
    messages = [Message(role="system", content=content)]
    for turn in view.history:
        role = "assistant" if turn.role == "agent" else "user"
        text = turn.text.replace("###STOP###", "").strip() or "..."
        messages.append(Message(role=role, content=text))
    return messages


class LLMAgent(Agent):
    """Any language model as the agent; it does not read the goal (``reads_goal`` is
    false), it answers :func:`agent_messages`. Call ``k`` samples with seed ``seed + k``."""

    def __init__(
        self, llm: LLM, params: SamplingParams | None = None, system: str = "", seed: int = 0
    ) -> None:
        self.llm = llm
        self.params = params or SamplingParams(max_tokens=96, temperature=0.7)
        self.system = system or AGENT_SYSTEM
        self.name = f"llm:{llm.name}"
        self.seed = seed
        self._calls = 0

    def respond(self, views: Sequence[AgentView]) -> list[str]:
        conversations = [agent_messages(self.system, view) for view in views]
        params = self.params.model_copy(update={"seed": self.seed + self._calls})
        self._calls += 1
        return [c.text.strip() or "..." for c in self.llm.chat(conversations, params)]
