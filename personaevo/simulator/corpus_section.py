"""Teaching the tiny model the simulator's exact input format.

Importing this module (which ``import personaevo`` does, so every process that builds or
looks up the tiny model sees it) registers the ``simulator_turns`` section of the tiny
model's corpus (:func:`personaevo.llm.corpus.register_section`, replacing the generic
one), so the tiny model starts as a plausible simulator. Each example is built by the same code
that builds the simulator's input (:func:`~personaevo.simulator.conditioning.simulator_messages`):

* a persona drawn uniformly from a built-in space (half of them with a description),
  its derived profile and a goal from the built-in template;
* a conversation between :class:`TemplateSimulator` (a rule-based user that follows
  the intent, states only true facts and stops when the goal state allows) and the
  scripted agent (stalling 20% of the time), 3 to 7 user turns;
* one user turn of it as ``[system, ...history..., assistant: the user's line]``
  (3 examples in 4), or a Q&A probe after a turn answered with the right letter (1 in 4).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import numpy as np

from personaevo.llm import Message
from personaevo.llm.corpus import describe_persona, register_section, sample_persona
from personaevo.personas import Persona
from personaevo.simulator.agents import ScriptedAgent
from personaevo.simulator.conditioning import STOP, WINDOW, simulator_messages
from personaevo.simulator.goal_files import GoalTemplate, builtin_goal_path
from personaevo.simulator.goals import BEHAVIOUR_KINDS, Status
from personaevo.simulator.intents import Intent
from personaevo.simulator.judges import RuleJudge
from personaevo.simulator.profiles import profile_from_persona
from personaevo.simulator.qa import make_questions, question_messages
from personaevo.simulator.rollout import run_conversations, state_from
from personaevo.simulator.simulator import IntentPlanner, Session, Simulator
from personaevo.spaces import TraitSpace, builtin_space_names, load_space

SECTION = "simulator_turns"
EMOTIONS = ("worried", "upset", "frustrated", "anxious", "stressed")


class TemplateSimulator(Simulator):
    """A rule-based user with the :class:`Simulator` interface: it writes each line from
    the goal, the goal state and the profile, following the intent exactly. It is the
    corpus's teacher and a reference point for evaluation, not a model of real users."""

    def __init__(self, seed: int = 0, planner: IntentPlanner | None = None) -> None:
        self.llm = None
        self.params = None
        self.window = WINDOW
        self.planner = planner or IntentPlanner()
        self.name = "template"
        self.seed = seed

    def reply(self, sessions: Sequence[Session], intents: Sequence[Intent], seed=None):
        out = []
        for session, intent in zip(sessions, intents, strict=True):
            digest = sum(map(ord, session.id)) + 31 * session.user_turns
            rng = random.Random(f"{self.seed}:{seed}:{session.id}:{digest}")
            out.append(template_line(session, intent, rng))
        return out


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def template_line(session: Session, intent: Intent, rng: random.Random) -> str:
    """The template user's line for ``intent`` (see :class:`TemplateSimulator`)."""
    goal, state, facts = session.goal, session.state, session.profile.facts
    pending = [
        (kind, item)
        for (kind, item), s in zip(goal.items(), state.items, strict=True)
        if kind not in BEHAVIOUR_KINDS and s.status != Status.COMPLETE
    ]
    objectives = [item for kind, item in pending if kind == "task_objectives"]
    requirement = next((item for kind, item in pending if kind == "requirements"), None)
    objective = _lower_first((objectives or [goal.task_objectives[0]])[0].text.rstrip("."))
    known = goal.instructions.known_info
    if intent == Intent.REQUEST:
        line = rng.choice(
            [f"I want to {objective}.", f"Can you help me {objective}?", f"I need to {objective}."]
        )
    elif intent == Intent.INFORM:
        keys = [k for k in known if requirement and known[k] in requirement.text] or list(known)
        parts = []
        if keys:
            key = rng.choice(keys)
            parts.append(f"My {key.replace('_', ' ')} is {known[key]}.")
        if not parts or rng.random() < 0.4:
            parts.append(_fact_sentence(facts, rng))
        line = " ".join(parts)
    elif intent == Intent.CLARIFY:
        line = rng.choice(
            [f"I mean, I want to {objective}.", f"To clarify, I need to {objective}."]
        )
    elif intent == Intent.CONFIRM:
        line = rng.choice(["Yes, that's right.", "Okay, thank you.", "Yes, please do that."])
    elif intent == Intent.COMPLAIN:
        line = rng.choice(
            [f"This is ridiculous. I still need to {objective}.", "That is not acceptable."]
        )
    elif intent == Intent.EXPRESS_EMOTION:
        mood = next((str(v) for v in session.profile.traits.values() if v in EMOTIONS), None)
        line = f"I'm so {mood or rng.choice(EMOTIONS)} about this."
    elif intent == Intent.CHANGE_GOAL:
        line = f"Actually, forget that. I want to {objective} instead."
    else:
        line = rng.choice(["Thanks, that's all. Bye.", "Great, goodbye."]) + f" {STOP}"
    verbosity = str(session.profile.traits.get("verbosity", ""))
    if verbosity in ("verbose", "rambling") and intent != Intent.END:
        line = f"{line} {_fact_sentence(facts, rng)}"
    return line


def _fact_sentence(facts: dict, rng: random.Random) -> str:
    key = rng.choice(["name", "age", "occupation", "location"])
    if key == "name":
        return f"My name is {facts['name']}."
    if key == "age":
        return f"I'm {facts['age']} years old."
    if key == "occupation":
        job = str(facts["occupation"])
        if job in ("retired", "unemployed"):
            return f"I'm {job}."
        article = "an" if job[:1] in "aeiou" else "a"
        return f"I work as {article} {job}."
    return f"I live in {facts['location']}."


@functools.cache
def _spaces() -> tuple[TraitSpace, ...]:
    return tuple(load_space(name) for name in builtin_space_names())


@functools.cache
def _template() -> GoalTemplate:
    return GoalTemplate.load(builtin_goal_path("template"))


def simulator_examples(rng: np.random.Generator, n: int) -> list[list[Message]]:
    """``n`` corpus conversations in the simulator's format (see the module docstring)."""
    r = random.Random(int(rng.integers(2**63)))
    seed = int(rng.integers(2**31))
    judge, agent = RuleJudge(), ScriptedAgent(refusal=0.2)
    out: list[list[Message]] = []
    while len(out) < n:
        batch = min(64, n - len(out))
        sessions, simulator = [], TemplateSimulator(seed)
        for _ in range(batch):
            space = r.choice(_spaces())
            traits = sample_persona(space, r)
            pid = f"x{r.getrandbits(40):x}"
            text = describe_persona(space, traits) if r.random() < 0.5 else None
            persona = Persona(id=pid, traits=traits, description=text)
            profile = profile_from_persona(persona, space, seed)
            goal = _template().compose(profile, seed)
            sessions.append(simulator.start(pid, profile, goal, seed))
        turns = r.randint(3, 7)
        for record in run_conversations(simulator, agent, judge, sessions, turns, seed):
            users = record.user_turn_indices()
            k = r.choice(users)
            turn = record.turns[k]
            state = state_from(record.goal, record.turns[k - 1].statuses or [])
            context = simulator_messages(
                record.profile, record.goal, state, record.turns[:k], turn.intent or Intent.REQUEST
            )
            if r.random() < 0.25:
                facts = {**record.profile.facts, **record.goal.instructions.known_info}
                questions = make_questions(facts, np.random.default_rng(r.getrandbits(32)), k=1)
                if questions:
                    q = questions[0]
                    probe = question_messages(context, turn.text, q)
                    out.append([*probe, Message(role="assistant", content=q.answer_letter)])
                    continue
            out.append([*context, Message(role="assistant", content=turn.text)])
    return out[:n]


register_section(SECTION, simulator_examples, weight=1.0)
