"""Rewards for whole conversations (the ``conversation`` training unit).

A row of the conversation unit (:mod:`personaevo.simulator.multiturn`) is one
conversation ``c`` with user lines ``x_1 .. x_T``; TRL passes its
:class:`~personaevo.simulator.rollout.ConversationRecord` as the ``record`` column. Its
reward is

    R(c) = sum_r w_r * mean_t r(x_t)  +  sum_k w_k * R_k(c)

* per-turn rewards ``r`` (the names in ``TrainConfig.rewards``, defined in
  :mod:`personaevo.simulator.rewards`): the mean over the conversation's user turns of the
  turn reward of the same name, None values left out (the numbers ``eval-simulator``
  reports, from :func:`~personaevo.simulator.evaluation.conversation_scores`);
* trajectory rewards ``R_k`` (``TrainConfig.trajectory_rewards``), each in [0, 1]:

  - ``goal_alignment``: UGST's final alignment, the share of goal items Aligned or
    Complete in the goal state after the conversation's last line;
  - ``task_completion``: 1 when every task objective and requirement ended Complete,
    else 0;
  - ``consistency``: over all the user's lines at once, the share of consistency checks
    that pass: every line against the persona (``T`` prompt-to-line checks) and every
    pair of lines (``T (T - 1) / 2`` line-to-line checks),
    ``consistency = (checks passed) / (checks judged readably)``, None when no check is
    readable. Unlike the mean of per-turn ``line_to_line``, a late contradiction of many
    earlier lines weighs by the number of pairs it breaks.

``w`` are ``TrainConfig.reward_weights`` (default 1 for every reward), handed to TRL as
``reward_weights``; TRL sums the weighted rewards (a None reward is skipped) and
normalises within each group of ``group_size`` conversations of the same persona:
``A_i = (R_i - mean_group R) / (std_group R + 1e-4)``. Every token the policy wrote in
conversation ``i`` gets ``A_i``.

On a Q&A probe row (``kind == "probe"``) only ``qa_consistency`` applies (the completion
is graded exactly); every other reward is None. Each reward is a
:class:`~personaevo.simulator.rewards.CountedReward` (its ``count`` holds the judge's
verdicts behind it), so the training log's ``judgements/NAME`` and ``unreadable/NAME``
work as in the turn unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from personaevo.llm import LLM
from personaevo.simulator.conditioning import STOP, known_facts, persona_text
from personaevo.simulator.judges import Judge
from personaevo.simulator.rewards import CountedReward, qa_consistency
from personaevo.simulator.rollout import ConversationRecord
from personaevo.simulator.verdicts import JudgementCount, Verdict

TRAJECTORY_REWARDS = ("goal_alignment", "task_completion", "consistency")


def user_lines(record: ConversationRecord) -> list[str]:
    """The user's lines of a conversation, stop markers removed."""
    return [t.text.replace(STOP, "").strip() for t in record.turns if t.role == "user"]


def consistency_scores(
    records: Sequence[ConversationRecord], judge: Judge
) -> tuple[list[float | None], JudgementCount]:
    """``consistency`` of each conversation (see the module docstring) in two batched
    judge calls, and the judge's verdicts behind them."""
    before = judge.tally.model_copy()
    profile_cases, pair_cases, owners_p, owners_l = [], [], [], []
    for c, record in enumerate(records):
        lines = user_lines(record)
        facts = known_facts(record.profile, record.goal)
        text = persona_text(record.profile, record.goal)
        for k, line in enumerate(lines):
            profile_cases.append((facts, text, line))
            owners_p.append(c)
            for earlier in lines[:k]:
                pair_cases.append((earlier, line))
                owners_l.append(c)
    passed, judged = [0] * len(records), [0] * len(records)
    profile = judge.contradicts_profile(profile_cases) if profile_cases else []
    pairs = judge.contradicts_line(pair_cases) if pair_cases else []
    for owner, verdict in [
        *zip(owners_p, profile, strict=True),
        *zip(owners_l, pairs, strict=True),
    ]:
        if verdict.readable:
            judged[owner] += 1
            passed[owner] += verdict is not Verdict.YES
    scores = [p / n if n else None for p, n in zip(passed, judged, strict=True)]
    return scores, judge.tally - before


def final_scores(records: Sequence[ConversationRecord]) -> dict[str, list[float | None]]:
    """``goal_alignment`` and ``task_completion`` of each conversation, from the goal
    state after its last line."""
    states = [r.state_at(r.turns[-1].statuses or []) for r in records]
    return {
        "goal_alignment": [s.alignment() for s in states],
        "task_completion": [1.0 if s.tasks_complete() else 0.0 for s in states],
    }


class _Scored:
    """One batch's scores: per reward, a value per conversation, and the verdicts."""

    def __init__(self, records: list[ConversationRecord]) -> None:
        self.records = records
        self.values: dict[str, list[float | None]] = {}
        self.counts: dict[str, JudgementCount] = {}


class TrajectoryScorer:
    """Scores a batch of conversations on every reward once (TRL calls the reward
    functions one after another with the same records; the first call computes, the
    others read the cache)."""

    def __init__(
        self,
        turn_rewards: Sequence[str],
        trajectory_rewards: Sequence[str],
        judge: Judge,
        answerer: LLM | None,
        qa_questions: int,
        window: int,
        max_turns: int,
        pools: dict[str, list[str]],
        seed: int = 0,
    ) -> None:
        self.turn_rewards, self.trajectory_rewards = list(turn_rewards), list(trajectory_rewards)
        self.judge, self.answerer, self.qa_questions = judge, answerer, qa_questions
        self.window, self.max_turns, self.pools, self.seed = window, max_turns, pools, seed
        self._last: _Scored | None = None

    def score(self, records: list[ConversationRecord], step: int) -> _Scored:
        last = self._last
        if (
            last is not None
            and len(last.records) == len(records)
            and all(a is b for a, b in zip(last.records, records, strict=True))
        ):
            return last
        from personaevo.simulator.evaluation import conversation_scores

        scored = _Scored(records)
        if self.turn_rewards:
            values, counts = conversation_scores(
                records,
                self.judge,
                self.answerer,
                self.qa_questions,
                self.window,
                self.max_turns,
                seed=self.seed * 1_000_003 + step,
                pools=self.pools,
                metrics=self.turn_rewards,
            )
            scored.values.update({k: values[k] for k in self.turn_rewards if k in values})
            scored.counts.update(counts)
        scored.values.update(final_scores(records))
        tracking = sum((r.judgements for r in records), JudgementCount())
        scored.counts["goal_alignment"] = scored.counts["task_completion"] = tracking
        if "consistency" in self.trajectory_rewards:
            scored.values["consistency"], scored.counts["consistency"] = consistency_scores(
                records, self.judge
            )
        self._last = scored
        return scored


class ConversationReward(CountedReward):
    """One reward of the conversation unit, with TRL's signature (see the module
    docstring); ``count`` grows by the verdicts behind each new batch's values (for
    ``goal_alignment`` and ``task_completion``: those that tracked the goal state)."""

    def __init__(self, name: str, scorer: TrajectoryScorer) -> None:
        super().__init__(name, fn=lambda *a, **k: [], judge=scorer.judge)
        self.scorer = scorer
        self._counted: _Scored | None = None

    def __call__(self, prompts, completions, record=None, kind=None, **columns):
        n = len(completions)
        out: list[float | None] = [None] * n
        rows = [i for i in range(n) if record is not None and record[i] is not None]
        if rows:
            state = columns.get("trainer_state")
            step = int(state.global_step) if state is not None else 0
            scored = self.scorer.score([record[i] for i in rows], step)
            if scored is not self._counted:
                self.count = self.count + scored.counts.get(self.__name__, JudgementCount())
                self._counted = scored
            values = scored.values.get(self.__name__, [None] * len(rows))
            for i, value in zip(rows, values, strict=True):
                out[i] = value
        probes = [i for i in range(n) if kind is not None and kind[i] == "probe"]
        if probes and self.__name__ == "qa_consistency":
            questions = columns["questions"]
            graded = qa_consistency(
                [prompts[i] for i in probes],
                [completions[i] for i in probes],
                [questions[i] for i in probes],
                kind=["probe"] * len(probes),
            )
            for i, value in zip(probes, graded, strict=True):
                out[i] = value
        return out


def conversation_rewards(scorer: TrajectoryScorer) -> list[ConversationReward]:
    """The scorer's per-turn rewards, then its trajectory rewards, as TRL reward functions."""
    names = [*scorer.turn_rewards, *scorer.trajectory_rewards]
    return [ConversationReward(name, scorer) for name in names]
