"""A trained user simulator served to an outside agent harness such as tau2-bench, over
the OpenAI HTTP API (``personaevo serve-simulator``).

**What tau2-bench sends.** Its LLM user simulator (``src/tau2/user/user_simulator.py`` at
commit ``a2c024725189473d2d7cea3a5cfdbcc67478e41f``) calls ``litellm.completion`` with the
``--user-llm`` model and ``--user-llm-args`` (``api_base`` points it at this server) and:

* one ``system`` message: tau2's simulation guidelines, then ``<scenario>``, the task's
  ``str(user_scenario)`` (``Persona:`` and ``Instructions:``, tab-indented) and
  ``</scenario>``;
* the conversation with the roles flipped (``UserState.flip_roles``): the agent's messages
  arrive as ``user`` messages, the simulated user's own earlier messages as ``assistant``
  messages, tool results for user tools as ``tool`` messages (skipped here). The agent
  speaks first ("Hi! How can I help you today?").

tau2 ends the conversation when the reply contains ``###STOP###``, ``###TRANSFER###`` or
``###OUT-OF-SCOPE###``.

**What this server does with a request.** It is stateless: every request carries the
whole conversation.

1. *Scenario*: the text between ``<scenario>`` and ``</scenario>`` (the whole system
   message when there is none). A task of a ``--tasks`` file whose scenario renders to
   exactly this text gives its goal (the exported goal, patterns included, when the task
   carries one); any other text is parsed as tau2's rendering and its goal derived
   (:mod:`personaevo.simulator.tau2_text`).
2. *Persona*, in this order: the persona the ``model`` names (``NAME/PERSONA_ID``, one
   served model per persona of ``--personas``/``--run``); the exported profile of a
   ``--tasks`` task; the scenario's persona text when this project wrote it; a persona of
   ``--personas`` drawn by the scenario's hash (the same persona for the same task); else a
   profile of the identity facts the scenario states. The goal's identity facts (name, zip
   code, ...) always win (:func:`~personaevo.simulator.tau2_text.reconcile`).
3. *Goal state*: the conversation is replayed through the judge and the intent planner
   exactly as :func:`~personaevo.simulator.rollout.run_conversations` would have played
   it (the planner's seeded draws included), so the state and intent are those a live
   session would have.
4. *The reply*: the simulator's next line for the planned intent. When the planner says
   ``end`` (every task objective and requirement complete, or ``max_turns`` user turns
   reached) the line ends with ``###STOP###`` (added when the model left it out); the
   model may also stop on its own. When the agent's last message says the user is being
   transferred to a human agent, the reply is ``###TRANSFER###``.

A reply is an OpenAI ``chat.completion`` with ``usage``; it also carries a ``personaevo``
object (persona id, goal id, intent, goal state) that OpenAI clients keep as an extra
field. Streaming and ``n > 1`` are refused (400). Requests are answered one at a time.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from personaevo.llm.base import Completion, SamplingParams
from personaevo.llm.server import OpenAIServer, RequestError
from personaevo.simulator.agents import GREETING
from personaevo.simulator.conditioning import Turn, clean_line
from personaevo.simulator.goals import GoalState, UserGoal, after_agent, after_user
from personaevo.simulator.intents import STOP, Intent
from personaevo.simulator.judges import Judge, RuleJudge
from personaevo.simulator.profiles import Profile
from personaevo.simulator.rollout import user_lines_for_judge
from personaevo.simulator.simulator import Session, Simulator
from personaevo.simulator.tau2 import Tau2Task, goal_from_task
from personaevo.simulator.tau2_text import (
    ScenarioError,
    goal_from_scenario,
    parse_persona_text,
    parse_scenario_text,
    reconcile,
)

DEFAULT_NAME = "personaevo-user"
TRANSFER = "###TRANSFER###"
_TRANSFERRED = re.compile(r"transferred to a human agent", re.IGNORECASE)
_ATTEMPTS = 3


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def scenario_block(system: str) -> str:
    """The text between ``<scenario>`` and the last ``</scenario>``, or all of ``system``."""
    start, end = system.find("<scenario>"), system.rfind("</scenario>")
    if start < 0 or end < start:
        return system.strip()
    return system[start + len("<scenario>") : end].strip()


class ScenarioBook:
    """Which profile and goal a request is for (steps 1 and 2 of the module docstring)."""

    def __init__(self, tasks: Sequence[Tau2Task] = (), profiles: Sequence[Profile] = ()):
        self.tasks = {t.user_scenario.render().strip(): t for t in tasks}
        self.profiles = {p.persona_id: p for p in profiles}
        self._drawn = sorted(self.profiles)

    def resolve(
        self, scenario_text: str, persona_id: str | None = None
    ) -> tuple[Profile, UserGoal]:
        key = scenario_text.strip()
        digest = _digest(key)
        task = self.tasks.get(key)
        if task is not None:
            goal, persona, extension = (
                goal_from_task(task),
                task.user_scenario.persona,
                task.extension(),
            )
        else:
            scenario = parse_scenario_text(key)
            if scenario is None:
                raise RequestError(
                    HTTPStatus.BAD_REQUEST,
                    "system message: no tau2 user scenario (expected <scenario>, then "
                    "'Persona:' and/or 'Instructions:' as tau2 renders a UserScenario)",
                )
            try:
                goal = goal_from_scenario(scenario, f"scenario-{digest}")
            except (ScenarioError, ValidationError) as err:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"scenario: {err}") from None
            persona, extension = scenario.persona, None
        parsed = parse_persona_text(persona) if persona else None
        if persona_id is not None:
            profile = self.profiles[persona_id]
        elif extension is not None:
            profile = extension.profile
        elif parsed is not None:
            profile = parsed[0]
        elif self._drawn:
            profile = self.profiles[self._drawn[int(digest, 16) % len(self._drawn)]]
        else:
            profile = Profile(persona_id=f"scenario-{digest}")
        return reconcile(profile, goal), goal


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    raise RequestError(HTTPStatus.BAD_REQUEST, "messages: content must be a string or parts")


def split_messages(messages: Any) -> tuple[str, list[Turn]]:
    """The system text and the conversation as :class:`Turn` s (``user`` messages are the
    agent's lines, ``assistant`` messages the simulated user's; tool messages and empty
    messages are skipped)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(HTTPStatus.BAD_REQUEST, "messages: must be a non-empty list")
    system, history = [], []
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"messages[{k}]: needs a role")
        role, text = message["role"], _text(message.get("content")).strip()
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user" and text:
            history.append(Turn(role="agent", text=text))
        elif role == "assistant" and text:
            history.append(Turn(role="user", text=text))
        elif role not in ("user", "assistant", "tool", "function"):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"messages[{k}]: unknown role {role!r}")
    if not system:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, "messages: no system message holding the user scenario"
        )
    return "\n\n".join(system), history


def _statuses(state: GoalState) -> list[str]:
    return [str(i.status) for i in state.items]


def replay(
    simulator: Simulator,
    judge: Judge,
    session: Session,
    history: Sequence[Turn],
    max_turns: int,
) -> Session:
    """``session`` after ``history``: each user line gets the intent the planner would
    have chosen and is judged, each agent line is judged, as in a live rollout."""
    for turn in history:
        if turn.role == "user":
            intent = simulator.planner.next_intent(session, max_turns)
            lines = user_lines_for_judge([session], [turn.text])
            session.state = after_user(session.state, judge.user_checks(lines)[0])
            statuses = _statuses(session.state)
            session.history.append(
                Turn(role="user", text=turn.text, intent=intent, statuses=statuses)
            )
        else:
            done = judge.agent_checks([(session.goal, turn.text)])[0]
            session.state = after_agent(session.state, done)
            session.history.append(
                Turn(role="agent", text=turn.text, statuses=_statuses(session.state))
            )
    return session


class UserSimulatorServer(OpenAIServer):
    """``simulator`` playing users over ``POST /v1/chat/completions`` (see the module
    docstring); ``GET /v1/models`` lists ``served_name`` and ``served_name/PERSONA_ID``
    for every persona of ``book``."""

    def __init__(
        self,
        simulator: Simulator,
        book: ScenarioBook,
        judge: Judge | None = None,
        served_name: str = DEFAULT_NAME,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_turns: int = 20,
        seed: int = 0,
    ) -> None:
        if simulator.llm is None:
            raise ValueError("the served simulator needs a language model")
        super().__init__(simulator.llm, served_name, host=host, port=port)
        self.simulator = simulator
        self.book = book
        self.judge = judge or RuleJudge()
        self.max_turns = max_turns
        self.seed = seed
        self._lock = threading.Lock()

    def model_names(self) -> list[str]:
        return [self.model_name, *(f"{self.model_name}/{p}" for p in self.book.profiles)]

    def models(self) -> dict:
        entries = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "personaevo"}
            for name in self.model_names()
        ]
        return {"object": "list", "data": entries}

    def _persona_of(self, model: Any) -> str | None:
        if model == self.model_name:
            return None
        prefix = f"{self.model_name}/"
        if isinstance(model, str) and model.startswith(prefix):
            persona_id = model[len(prefix) :]
            if persona_id in self.book.profiles:
                return persona_id
        raise RequestError(
            HTTPStatus.NOT_FOUND,
            f"The model `{model}` does not exist; served: {self.model_name} "
            f"(or {self.model_name}/PERSONA_ID for one of {len(self.book.profiles)} personas)",
        )

    def complete(self, path: str, body: dict) -> dict:
        if path != "/v1/chat/completions":
            raise RequestError(
                HTTPStatus.NOT_FOUND, "this server plays users: use POST /v1/chat/completions"
            )
        if body.get("stream"):
            raise RequestError(HTTPStatus.BAD_REQUEST, "stream=true is not supported")
        if body.get("n", 1) != 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, "only n=1 is supported")
        persona_id = self._persona_of(body.get("model"))
        params = self._request_params(body)
        system, history = split_messages(body.get("messages"))
        with self._lock:
            line, completions, info = self.user_turn(system, history, persona_id, params)
        prompt = sum(c.prompt_tokens for c in completions)
        generated = sum(c.completion_tokens for c in completions)
        finish = completions[-1].finish_reason if completions else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": line},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": generated,
                "total_tokens": prompt + generated,
            },
            "personaevo": info,
        }

    def _request_params(self, body: dict) -> SamplingParams:
        """The simulator's sampling, with the request's ``temperature``, ``top_p``,
        ``seed`` and ``stop``; ``max_tokens`` may only lower the simulator's."""
        base = self.simulator.params
        update: dict[str, Any] = {
            k: body[k] for k in ("temperature", "top_p", "seed") if body.get(k) is not None
        }
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool) and limit < base.max_tokens:
            update["max_tokens"] = limit
        stop = body.get("stop")
        if stop is not None:
            update["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        try:
            return SamplingParams.model_validate({**base.model_dump(), **update})
        except ValidationError as err:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"sampling parameters: {err}") from err

    def user_turn(
        self,
        system: str,
        history: list[Turn],
        persona_id: str | None,
        params: SamplingParams,
    ) -> tuple[str, list[Completion], dict]:
        """The simulated user's next line after ``history``, the completions it took and
        what the server knew (persona, goal, intent, goal state)."""
        scenario = scenario_block(system)
        profile, goal = self.book.resolve(scenario, persona_id)
        if not history:
            history = [Turn(role="agent", text=GREETING)]
        if history[-1].role != "agent":
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                "messages: the last message must be the agent's (role user) for the "
                "simulated user to answer",
            )
        seed = self.seed if params.seed is None else params.seed
        session_id = f"{_digest(scenario)}-{profile.persona_id}"
        session = self.simulator.start(session_id, profile, goal, seed)
        replay(self.simulator, self.judge, session, history, self.max_turns)
        intent = self.simulator.planner.next_intent(session, self.max_turns)
        info = {
            "persona_id": profile.persona_id,
            "goal_id": goal.id,
            "intent": str(intent),
            "goal_state": session.state.render(),
            "user_turn": session.user_turns,
        }
        if _TRANSFERRED.search(history[-1].text):
            return TRANSFER, [], info
        line, completions = self._generate(session, intent, params)
        return line, completions, info

    def _generate(
        self, session: Session, intent: Intent, params: SamplingParams
    ) -> tuple[str, list[Completion]]:
        messages = self.simulator.messages(session, intent)
        completions: list[Completion] = []
        line = ""
        for attempt in range(_ATTEMPTS):
            retry = {
                "temperature": max(params.temperature, 0.7),
                "seed": (params.seed or 0) + attempt,
            }
            sampling = params if attempt == 0 else params.model_copy(update=retry)
            completion = self.simulator.llm.chat([messages], sampling)[0]
            completions.append(completion)
            line = clean_line(completion.text)
            if line:
                break
        if intent == Intent.END and STOP not in line:
            line = f"{line} {STOP}".strip()
        if not line:
            raise RequestError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"the simulator wrote an empty line {_ATTEMPTS} times",
            )
        return line, completions
