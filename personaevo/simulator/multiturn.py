"""Multi-turn GRPO: whole conversations as the training unit, through TRL's ``rollout_func``.

With ``TrainConfig.unit = "conversation"`` a GRPO sample is one whole conversation played
by the policy against the agent, not one user turn. TRL's ``GRPOTrainer`` calls
:class:`ConversationRollout` (its ``rollout_func`` hook) with the batch's prompts; the
rollout plays every conversation to its end with
:func:`~personaevo.simulator.rollout.run_conversations` (same intent planner, agent, judge
and goal tracking as every other rollout) and returns, per conversation, one token
sequence:

    prompt     = chat template of [system, "Agent: GREETING\\nIntent: ..."] + generation prompt
    completion = u_1 e_1 | a_1 | u_2 e_2 | a_2 | ... | u_T e_T

where ``u_t`` are the tokens the policy sampled for user turn ``t``, ``e_t`` the
end-of-turn token it sampled, and ``a_t`` the chat-template tokens of the next agent
message (``"Agent: TEXT\\nIntent: NAME (description)"`` as a ``user`` message, and the
generation prompt of the next assistant turn). The policy generates turn ``t + 1`` from
exactly ``prompt + completion so far``, so the sequence the loss scores is the one the
policy sampled from (on-policy, as in TRL's own tool-calling loop). The system message is
rendered once, with the goal state at the start; later goal states are not re-rendered
into it (that would change the prefix), the history is never cut to a window, and every
agent message keeps the intent of the turn that followed it.

**Masking.** The rollout returns ``env_mask`` beside the ids: 1 on ``u_t`` and ``e_t``,
0 on every ``a_t`` token. TRL multiplies its completion mask by it (``loss_mask =
completion_mask * tool_mask``), so agent and template tokens get no gradient and do not
count in the loss's token normaliser; only the policy's own user tokens are trained. A
user turn that reaches ``max_completion_length`` without ending is masked out too (its
tokens get 0, and a closing end-of-turn token is appended with 0), as truncated
completions are in the single-turn unit (tiny models otherwise learn to pad to the limit).

**Groups.** TRL repeats every prompt ``group_size`` times; the rollout gives the members
of a group the same session seed (``step``, group index), so their intent planner and the
agent's stalls start from the same random stream (common random numbers): the group's
reward spread comes from the user lines, which is what the advantage should credit.

**Q&A probes** stay: a share ``qa_prompt_share`` of the rows are single-turn probes (one
multiple-choice question about the profile after a user line from the latest refresh),
generated as one completion. Rows are built by :class:`ConversationPool`; the rewards are
in :mod:`personaevo.simulator.trajectory`. Generation uses the ``transformers`` model in the
trainer's process (no vLLM in this unit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personaevo.llm import Message, SamplingParams
from personaevo.simulator.agents import GREETING, Agent
from personaevo.simulator.conditioning import (
    Turn,
    agent_message,
    clean_line,
    simulator_messages,
)
from personaevo.simulator.goals import GoalState
from personaevo.simulator.intents import Intent
from personaevo.simulator.judges import Judge
from personaevo.simulator.policy import GeneratedIds, PolicyLLM, TrainerPolicy
from personaevo.simulator.pool import PromptPool
from personaevo.simulator.rollout import ConversationRecord, run_conversations
from personaevo.simulator.simulator import IntentPlanner, Session, Simulator


def prompt_key(prompt: Sequence[Any]) -> str:
    """A stable key for a chat prompt (a list of message dicts or :class:`Message`)."""
    dumped = [m.model_dump() if isinstance(m, Message) else dict(m) for m in prompt]
    return json.dumps(dumped, sort_keys=True, default=str)


class ConversationPool(PromptPool):
    """Training rows for the conversation unit.

    Each refresh still plays ``conversations`` rollouts with the current policy (saved, and
    the source of Q&A probes); the pool's ``size`` rows are then, with probability
    ``probe_share``, a probe built from one of their user turns, else the *start* of a
    conversation with a persona the curriculum drew (``start`` = its index): the
    simulator's first input (the greeting and the first turn's intent). Every row has the
    columns ``prompt``, ``kind`` (``"conversation"`` or ``"probe"``), ``questions`` and
    ``start`` (-1 on probes). :meth:`lookup` finds a row from its prompt, which is all TRL
    hands the rollout (the previous refresh's rows too: the data loader reads one batch
    ahead)."""

    def fill(self, picks: np.ndarray, rows: list[dict], rng: np.random.Generator) -> list[dict]:
        fresh = []
        for _ in range(self.size):
            probe = None
            if rows and rng.random() < self.probe_share:
                probe = self.probe_row(dict(rows[int(rng.integers(len(rows)))]), rng)
            if probe is not None:
                keep = ("prompt", "kind", "questions")
                fresh.append({**{k: probe[k] for k in keep}, "start": -1})
                continue
            index = int(picks[int(rng.integers(len(picks)))])
            fresh.append(
                {
                    "prompt": [m.model_dump() for m in self.first_messages(index)],
                    "kind": "conversation",
                    "questions": [],
                    "start": index,
                }
            )
        # the data loader reads one batch ahead: keep the previous refresh's rows findable
        self._previous = getattr(self, "_by_prompt", {})
        self._by_prompt = {prompt_key(r["prompt"]): r for r in fresh}
        return fresh

    def first_messages(self, index: int) -> list[Message]:
        """The simulator's input for the first user turn with persona ``index``."""
        profile, goal = self.profiles[index], self.goals[index]
        state = GoalState.initial(goal)
        session = Session("first", profile, goal, state, np.random.default_rng(0))
        session.history.append(Turn(role="agent", text=GREETING))
        intent = self.planner.next_intent(session, self.max_turns)
        return simulator_messages(profile, goal, state, session.history, intent, self.window)

    def lookup(self, prompt: Sequence[Any]) -> dict:
        """The row whose prompt is ``prompt``."""
        key = prompt_key(prompt)
        row = getattr(self, "_by_prompt", {}).get(key) or getattr(self, "_previous", {}).get(key)
        if row is None:
            raise RuntimeError("a training prompt is not in the conversation pool")
        return row


class ChatTokens:
    """Token ids of chat-template pieces for one tokenizer.

    :meth:`first` renders a whole prompt with the generation prompt. :meth:`user_turn`
    gives the ids that follow an assistant turn's end-of-turn token when a ``user``
    message and the next generation prompt are added: the difference between a two-message
    dummy chat and the same chat plus the message, cut at the dummy's last end-of-turn
    token (the approach TRL takes for tool results)."""

    def __init__(self, tokenizer, terminators: set[int]) -> None:
        self.tokenizer = tokenizer
        dummy = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        self._dummy = dummy
        prefix = self._render(dummy, generation=False)
        found = [
            (prefix.rfind(text), text, token)
            for token in terminators
            if (text := tokenizer.convert_ids_to_tokens(token)) and text in prefix
        ]
        if not found:
            raise ValueError("the chat template closes an assistant turn with no end token")
        position, text, self.close = max(found)
        self._prefix = prefix[: position + len(text)]

    def _render(self, messages: list[dict], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation
        )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def first(self, messages: Sequence[Message | dict]) -> list[int]:
        dumped = [m.model_dump() if isinstance(m, Message) else m for m in messages]
        return self._ids(self._render(dumped, generation=True))

    def user_turn(self, content: str) -> list[int]:
        full = self._render([*self._dummy, {"role": "user", "content": content}], True)
        if not full.startswith(self._prefix):
            raise ValueError("the chat template re-renders earlier turns; cannot extend it")
        return self._ids(full[len(self._prefix) :])


@dataclass
class Track:
    """One conversation's token sequence: prompt ids, completion ids and their mask."""

    prompt: list[int]
    completion: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)

    def extend(self, ids: Sequence[int], trained: bool) -> None:
        self.completion += list(ids)
        self.mask += [int(trained)] * len(ids)

    def add_turn(self, out: GeneratedIds, close: int) -> None:
        """A sampled turn: its tokens (trained unless cut at the token limit), then its
        end token (trained), or ``close`` (not trained) when it did not end with one."""
        self.extend(out.ids, trained=not out.truncated)
        self.extend([out.end if out.end is not None else close], trained=out.end is not None)


class TokenSimulator(Simulator):
    """A :class:`Simulator` that generates each user line from the conversation's growing
    token sequence (see the module docstring) and keeps one :class:`Track` per session."""

    def __init__(
        self, policy: PolicyLLM, chat: ChatTokens, params: SamplingParams, planner: IntentPlanner
    ) -> None:
        super().__init__(policy, params, window=0, planner=planner)
        self.policy, self.chat = policy, chat
        self.tracks: dict[int, Track] = {}

    def reply(
        self, sessions: Sequence[Session], intents: Sequence[Intent], seed: int | None = None
    ) -> list[str]:
        tracks = []
        for session, intent in zip(sessions, intents, strict=True):
            track = self.tracks.get(id(session))
            if track is None:
                messages = simulator_messages(
                    session.profile, session.goal, session.state, session.history, intent, 1
                )
                track = self.tracks[id(session)] = Track(prompt=self.chat.first(messages))
            else:
                content = agent_message(session.history[-1].text, intent)
                track.extend(self.chat.user_turn(content), trained=False)
            tracks.append(track)
        params = self.params if seed is None else self.params.model_copy(update={"seed": seed})
        generated = self.policy.generate_ids([t.prompt + t.completion for t in tracks], params)
        lines = []
        for track, out in zip(tracks, generated, strict=True):
            track.add_turn(out, self.chat.close)
            text = self.policy.tokenizer.decode(out.ids, skip_special_tokens=True)
            lines.append(clean_line(text))
        return lines


class ConversationRollout:
    """TRL's ``rollout_func``: ``(prompts, trainer) -> {"prompt_ids", "completion_ids",
    "logprobs", "env_mask", "record"}`` (see the module docstring); ``record`` is each
    row's :class:`~personaevo.simulator.rollout.ConversationRecord` (None on probes) and
    reaches the reward functions as a column."""

    def __init__(
        self,
        pool: ConversationPool,
        agent: Agent,
        judge: Judge,
        tokenizer,
        params: SamplingParams,
        group_size: int,
        seed: int = 0,
    ) -> None:
        self.pool, self.agent, self.judge = pool, agent, judge
        self.tokenizer, self.params = tokenizer, params
        self.group_size, self.seed = group_size, seed
        self.records: list[ConversationRecord] = []  # the last batch's conversations

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        policy = TrainerPolicy(trainer, self.tokenizer)
        return self.play(prompts, policy, trainer.state.global_step)

    def play(self, prompts: list, policy, step: int) -> dict[str, list]:
        """The rollout for ``prompts`` with ``policy`` (a
        :class:`~personaevo.simulator.policy.PolicyLLM`) at optimizer step ``step``."""
        rows = [self.pool.lookup(p) for p in prompts]
        chat = ChatTokens(self.tokenizer, policy.terminators())
        tracks: list[Track | None] = [None] * len(rows)
        records: list[ConversationRecord | None] = [None] * len(rows)
        probes = [i for i, r in enumerate(rows) if r["kind"] == "probe"]
        if probes:
            ids = [chat.first(rows[i]["prompt"]) for i in probes]
            seeded = self.params.model_copy(update={"seed": self.seed * 7919 + step})
            for i, prompt, out in zip(probes, ids, policy.generate_ids(ids, seeded), strict=True):
                tracks[i] = Track(prompt=prompt)
                tracks[i].add_turn(out, chat.close)
        talks = [i for i, r in enumerate(rows) if r["kind"] == "conversation"]
        if talks:
            simulator = TokenSimulator(policy, chat, self.params, self.pool.planner)
            sessions = []
            for i in talks:
                index = rows[i]["start"]
                profile, goal = self.pool.profiles[index], self.pool.goals[index]
                name = f"s{step}-g{i // self.group_size}-{profile.persona_id}"
                sessions.append(simulator.start(name, profile, goal, self.seed + step))
            played = run_conversations(
                simulator, self.agent, self.judge, sessions, self.pool.max_turns, self.seed + step
            )
            for i, session, record in zip(talks, sessions, played, strict=True):
                tracks[i], records[i] = simulator.tracks[id(session)], record
            self.records = played
        done = [t for t in tracks if t is not None]
        if len(done) != len(rows):
            raise ValueError("a row is neither a conversation start nor a probe")
        return {
            "prompt_ids": [t.prompt for t in done],
            "completion_ids": [t.completion for t in done],
            "logprobs": None,
            "env_mask": [t.mask for t in done],
            "record": records,
        }
