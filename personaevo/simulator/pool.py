"""On-policy training prompts: a pool of user turns refreshed with the current policy.

GRPO needs prompts; here a prompt is one user turn of a rollout played by the policy
itself (profile, goal state, history and intent in, the next user line to generate).
:class:`PromptPool` holds ``size`` such rows. TRL's trainer reads a map-style
``datasets.Dataset`` of ``size`` slot numbers whose transform
(:meth:`PromptPool.rows`) looks each slot up in the pool at read time, so replacing the
pool's rows changes what the trainer reads next without rebuilding the trainer.
:class:`RefreshCallback` replays conversations with the current weights at the start
of training (also after a resume) and every ``K`` optimizer steps.

Every refresh ``r`` is seeded by ``(seed, r)``: the curriculum draws the personas at
progress ``t = step / total_steps``, the policy plays ``conversations`` conversations of
at most ``max_turns`` user turns against the agent, and ``size`` rows are drawn from all
their user turns (with replacement only when there are fewer). A row is a *turn* (the
completion is the user's next line; ``qa_questions`` Q&A probes ride along for the
``qa_consistency`` reward) or, with probability ``probe_share``, a *probe*: the same
history, the user's line, then one multiple-choice question about the profile as an agent
message; the completion is the answer, graded exactly. Probe rows train the simulator to
answer questions about itself consistently, which utterance rows alone cannot teach.

After every refresh the curriculum counts each conversation's outcome (its goal met or
failed, :func:`personaevo.simulator.curriculum.goal_failed`) for its persona: the
measured half of the persona's difficulty. A pool that starts at refresh ``r > 0`` (a
resumed run) first counts the outcomes of refreshes ``0 .. r-1`` from the rollout files
they saved, so a resumed run samples as the uninterrupted one would.

The accelerate data loader fetches one batch ahead, so the first batch after a refresh
may still come from the previous pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from personaevo.llm import LLM, Message, SamplingParams
from personaevo.simulator.agents import Agent
from personaevo.simulator.curriculum import Curriculum, goal_failed
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.judges import Judge
from personaevo.simulator.profiles import Profile
from personaevo.simulator.qa import make_questions, question_messages
from personaevo.simulator.rollout import (
    read_records,
    run_conversations,
    turn_prompts,
    write_records,
)
from personaevo.simulator.simulator import IntentPlanner, Simulator


class RefreshReport(BaseModel):
    refresh: int
    step: int
    conversations: int
    user_turns: int
    alignment: float
    stopped: float
    failed: float = 0.0  # share of the conversations whose goal was not met
    seconds: float


class PromptPool:
    """Training rows from on-policy rollouts (see the module docstring)."""

    def __init__(
        self,
        profiles: list[Profile],
        goals: list[UserGoal],
        curriculum: Curriculum,
        agent: Agent,
        judge: Judge,
        planner: IntentPlanner,
        params: SamplingParams,
        size: int = 64,
        conversations: int = 16,
        max_turns: int = 4,
        window: int = 6,
        qa_questions: int = 1,
        probe_share: float = 0.25,
        total_steps: int = 1,
        seed: int = 0,
        save_dir: str | Path | None = None,
    ) -> None:
        if len(profiles) != len(goals):
            raise ValueError("one goal per profile")
        self.profiles, self.goals = profiles, goals
        self.curriculum, self.agent, self.judge = curriculum, agent, judge
        self.planner, self.params = planner, params
        self.size, self.conversations, self.max_turns = size, conversations, max_turns
        self.window, self.qa_questions, self.probe_share = window, qa_questions, probe_share
        self.total_steps, self.seed = max(1, total_steps), seed
        self.save_dir = Path(save_dir) if save_dir else None
        self.pools = value_pools(profiles, goals)
        self._rows: list[dict] = []
        self.reports: list[RefreshReport] = []
        self._counted_before: int | None = None  # refreshes counted from saved files

    def refresh(self, llm: LLM, step: int, refresh: int) -> RefreshReport:
        """Replay conversations with ``llm`` (the current policy) and refill the pool."""
        import time

        start = time.perf_counter()
        self._count_saved(refresh)
        rng = np.random.default_rng([self.seed, refresh])
        picks = self.curriculum.sample(step / self.total_steps, self.conversations, rng)
        simulator = Simulator(llm, self.params, self.window, self.planner)
        sessions = [
            simulator.start(
                f"r{refresh}-c{k}-{self.profiles[i].persona_id}",
                self.profiles[i],
                self.goals[i],
                self.seed + refresh,
            )
            for k, i in enumerate(picks)
        ]
        records = run_conversations(
            simulator, self.agent, self.judge, sessions, self.max_turns, self.seed + refresh
        )
        failed = [goal_failed(r) for r in records]
        for i, lost in zip(picks, failed, strict=True):
            self.curriculum.record(int(i), lost)
        if self.save_dir is not None:
            write_records(self.save_dir / f"refresh-{refresh:04d}.jsonl", records)
        rows = [row for r in records for row in turn_prompts(r, self.window, self.max_turns)]
        self._rows = self.fill(picks, rows, rng)
        report = RefreshReport(
            refresh=refresh,
            step=step,
            conversations=len(records),
            user_turns=len(rows),
            alignment=float(np.mean([r.alignment for r in records])),
            stopped=float(np.mean([r.stop_reason == "stop_marker" for r in records])),
            failed=float(np.mean(failed)),
            seconds=round(time.perf_counter() - start, 2),
        )
        self.reports.append(report)
        return report

    def _count_saved(self, refresh: int) -> None:
        """On the pool's first refresh ``r``, count the outcomes saved by refreshes before
        ``r`` (a resumed run; see the module docstring)."""
        if self._counted_before is not None:
            return
        self._counted_before = refresh
        if self.save_dir is None:
            return
        index = {p.persona_id: i for i, p in enumerate(self.profiles)}
        for earlier in range(refresh):
            path = self.save_dir / f"refresh-{earlier:04d}.jsonl"
            if not path.is_file():
                continue
            for record in read_records(path):
                i = index.get(record.profile.persona_id)
                if i is not None:
                    self.curriculum.record(i, goal_failed(record))

    def fill(self, picks: np.ndarray, rows: list[dict], rng: np.random.Generator) -> list[dict]:
        """The pool's ``size`` rows, drawn from the refresh's user-turn ``rows`` (with
        replacement only when there are fewer); ``picks`` are the personas the curriculum
        drew for this refresh (unused here: subclasses build other rows from them)."""
        chosen = rng.choice(len(rows), self.size, replace=len(rows) < self.size)
        fresh = []
        for index in chosen:
            row = dict(rows[int(index)])
            probe = self.probe_row(row, rng) if rng.random() < self.probe_share else None
            if probe is not None:
                fresh.append(probe)
                continue
            questions = make_questions(row["facts"], rng, self.qa_questions, self.pools)
            row["questions"] = [q.model_dump() for q in questions]
            fresh.append(row)
        return fresh

    def probe_row(self, row: dict, rng: np.random.Generator) -> dict | None:
        """``row`` turned into a Q&A probe (None when its facts give no question)."""
        probe = make_questions(row["facts"], rng, 1, self.pools)
        if not probe:
            return None
        context = [Message.model_validate(m) for m in row["prompt"]]
        messages = question_messages(context, row["line"], probe[0])
        return {
            **row,
            "prompt": [m.model_dump() for m in messages],
            "kind": "probe",
            "questions": [probe[0].model_dump()],
        }

    def rows(self, batch: dict) -> dict:
        """The dataset transform: slot numbers in, the pool's columns out."""
        if not self._rows:
            raise RuntimeError("the prompt pool is empty: refresh it before training reads it")
        picked = [self._rows[int(slot) % len(self._rows)] for slot in batch["slot"]]
        return {key: [row[key] for row in picked] for key in picked[0]}

    def dataset(self):
        """A ``datasets.Dataset`` of ``size`` slots that reads the pool through
        :meth:`rows`."""
        from datasets import Dataset

        return Dataset.from_dict({"slot": list(range(self.size))}).with_transform(self.rows)


def value_pools(profiles: list[Profile], goals: list[UserGoal]) -> dict[str, list[str]]:
    """Every value each fact key takes across the profiles and goals (Q&A distractors)."""
    pools: dict[str, set[str]] = {}
    for profile, goal in zip(profiles, goals, strict=True):
        for key, value in {**profile.facts, **goal.instructions.known_info}.items():
            pools.setdefault(key, set()).add(str(value))
    return {k: sorted(v) for k, v in pools.items()}


def refresh_callback(pool: PromptPool, every: int, make_llm: Callable[[object], LLM]):
    """A ``transformers`` callback that refreshes ``pool`` when training starts and every
    ``every`` optimizer steps; ``make_llm(model)`` wraps the live model."""
    from transformers import TrainerCallback

    class RefreshCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._refresh(state, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 and state.global_step < state.max_steps:
                self._refresh(state, model)

        def _refresh(self, state, model) -> None:
            report = pool.refresh(make_llm(model), state.global_step, state.global_step // every)
            logged = {f"pool/{k}": v for k, v in report.model_dump().items()}
            state.log_history.append({"step": state.global_step, **logged})

    return RefreshCallback()
