"""Evaluating simulators: conversation-level metrics with bootstrap confidence intervals,
and several models side by side on the same personas, goals and seeds.

Each model plays ``conversations`` conversations (cycling through the (profile, goal)
pairs; conversation ``i`` has the same persona, goal and seed for every model) against
the agent. Per conversation:

* ``prompt_to_line``, ``line_to_line``, ``qa_consistency``, ``intent_adherence``,
  ``goal_progress``, ``no_leakage``, ``role_fidelity``, ``stop_validity``: the mean over
  its user turns of the training reward of the same name
  (:mod:`personaevo.simulator.rewards`), so training and evaluation measure the same
  thing; Q&A probes (``qa_questions`` per turn, seeded) are answered by the model itself;
* ``goal_alignment``: UGST's final alignment, the share of goal items Aligned or Complete
  after the last turn; ``task_completion``: 1 when every task objective and requirement
  ended Complete.

A judge's verdict may be unreadable (an LLM judge's reply that is neither yes nor no,
:mod:`personaevo.simulator.verdicts`). A turn's reward uses its readable verdicts only and
is None when it has none, so a conversation's mean leaves it out (numerator and
denominator): ``prompt_to_line`` of a conversation is (turns judged consistent) / (turns
judged readably). Per model and metric, ``judgements`` counts the verdicts behind the
metric and the unreadable ones (``unreadable_share = unreadable / judgements``): for the
turn metrics those the reward asked for, for ``goal_alignment`` and ``task_completion``
those that tracked the goal state during the conversations (an unreadable one moved no
status). ``qa_consistency`` and ``stop_validity`` ask the judge nothing (0 judgements).

A metric's interval is the 2.5 and 97.5 percentiles of the mean over 1,000 bootstrap
resamples (seeded). Conversations repeat personas (conversation ``i`` plays pair
``i mod P``), so they are not independent draws: the resampled unit is the **persona**
(a cluster bootstrap). A resample draws ``G`` of the ``G`` personas with replacement and
takes the mean over all conversations of the drawn personas, counted once per draw::

    mean* = sum_{g in draw} S_g / sum_{g in draw} n_g

with ``S_g`` and ``n_g`` the sum and count of persona ``g``'s values. With one
conversation per persona this is the ordinary bootstrap; duplicating a persona's
conversations leaves its width about the same, where resampling conversations would
narrow it as if they were new evidence. Differences between two models are paired: per
conversation ``b - a`` where both have a value, resampled by persona the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from personaevo.llm import LLM, SamplingParams
from personaevo.simulator.agents import Agent
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.judges import Judge
from personaevo.simulator.pool import value_pools
from personaevo.simulator.profiles import Profile
from personaevo.simulator.qa import make_questions
from personaevo.simulator.rewards import REWARDS, counted_reward_functions
from personaevo.simulator.rollout import ConversationRecord, simulate, turn_prompts
from personaevo.simulator.simulator import IntentPlanner, Simulator
from personaevo.simulator.verdicts import JudgementCount

TURN_METRICS = tuple(REWARDS)
METRICS = (*TURN_METRICS, "goal_alignment", "task_completion")
N_BOOT = 1000


class Interval(BaseModel):
    mean: float | None
    low: float | None
    high: float | None
    n: int


class ModelEval(BaseModel):
    model: str
    conversations: int
    seconds: float
    metrics: dict[str, Interval]
    per_conversation: dict[str, list[float | None]]
    personas: list[str] = Field(default_factory=list)  # per conversation: the resampled unit
    judgements: dict[str, JudgementCount] = Field(default_factory=dict)  # per metric


class Comparison(BaseModel):
    models: list[ModelEval]
    differences: dict[str, Interval] | None = None  # last model minus the first, paired
    judge: str
    agent: str
    max_turns: int
    seed: int


def conversation_scores(
    records: Sequence[ConversationRecord],
    judge: Judge,
    answerer: LLM | None,
    qa_questions: int,
    window: int,
    max_turns: int,
    seed: int,
    pools: dict[str, list[str]] | None = None,
    metrics: Sequence[str] = TURN_METRICS,
) -> tuple[dict[str, list[float | None]], dict[str, JudgementCount]]:
    """Every metric per conversation, and per metric the judge's verdicts behind it with
    the unreadable ones counted (see the module docstring); of the turn metrics, only
    those in ``metrics`` (training scores only the rewards it uses)."""
    rows, owner = [], []
    for c, record in enumerate(records):
        for t, row in enumerate(turn_prompts(record, window, max_turns)):
            rng = np.random.default_rng([seed, c, t])
            row["questions"] = make_questions(row["facts"], rng, qa_questions, pools)
            rows.append(row)
            owner.append(c)
    names = [n for n in metrics if n != "qa_consistency" or (answerer and qa_questions)]
    funcs = counted_reward_functions(names, judge, answerer)
    columns = {k: [r[k] for r in rows] for k in rows[0] if k not in ("line", "prompt")}
    prompts = [r["prompt"] for r in rows]
    out: dict[str, list[float | None]] = {}
    counts: dict[str, JudgementCount] = {}  # per metric: the judge's verdicts behind it
    for name, fn in zip(names, funcs, strict=True):
        values = fn(prompts, [r["line"] for r in rows], **columns) if rows else []
        counts[name] = fn.count
        sums, scored = np.zeros(len(records)), np.zeros(len(records))
        for c, value in zip(owner, values, strict=True):
            if value is not None:
                sums[c] += value
                scored[c] += 1
        out[name] = [float(s / k) if k else None for s, k in zip(sums, scored, strict=True)]
    out["goal_alignment"] = [r.alignment for r in records]
    out["task_completion"] = [
        1.0 if r.state_at(r.turns[-1].statuses or []).tasks_complete() else 0.0 for r in records
    ]
    tracking = sum((r.judgements for r in records), JudgementCount())
    counts["goal_alignment"] = counts["task_completion"] = tracking
    return out, counts


def bootstrap(
    values: Sequence[float | None],
    rng: np.random.Generator,
    groups: Sequence[str] | None = None,
) -> Interval:
    """Mean and 95% percentile interval over ``N_BOOT`` resamples (None values dropped).

    ``groups`` (one label per value, e.g. the persona id) makes it a cluster bootstrap
    over the labels (see the module docstring); without it every value is its own group."""
    labels = list(range(len(values))) if groups is None else list(groups)
    if len(labels) != len(values):
        raise ValueError(f"bootstrap: {len(values)} values but {len(labels)} group labels")
    kept = [(v, g) for v, g in zip(values, labels, strict=True) if v is not None]
    if not kept:
        return Interval(mean=None, low=None, high=None, n=0)
    x = np.array([v for v, _ in kept], dtype=float)
    _, owner = np.unique(np.array([str(g) for _, g in kept]), return_inverse=True)
    sums = np.bincount(owner, weights=x)
    counts = np.bincount(owner).astype(float)
    draws = rng.integers(0, len(sums), size=(N_BOOT, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(mean=float(x.mean()), low=float(low), high=float(high), n=len(x))


def paired_difference(
    a: Sequence[float | None],
    b: Sequence[float | None],
    rng: np.random.Generator,
    groups: Sequence[str] | None = None,
) -> Interval:
    """``b - a`` over conversations where both have a value, bootstrapped in pairs (by
    ``groups``, the persona of each conversation, when given)."""
    labels = list(range(len(a))) if groups is None else list(groups)
    kept = [
        (y - x, g) for x, y, g in zip(a, b, labels, strict=True) if x is not None and y is not None
    ]
    return bootstrap([d for d, _ in kept], rng, [str(g) for _, g in kept])


def evaluate_simulators(
    models: Sequence[tuple[str, LLM]],
    pairs: Sequence[tuple[Profile, UserGoal]],
    agent: Agent,
    judge: Judge,
    conversations: int = 32,
    max_turns: int = 6,
    seed: int = 0,
    qa_questions: int = 1,
    window: int = 6,
    planner: IntentPlanner | None = None,
    params: SamplingParams | None = None,
) -> tuple[Comparison, dict[str, list[ConversationRecord]]]:
    """Play and score each model; returns the comparison and every model's records."""
    pools = value_pools([p for p, _ in pairs], [g for _, g in pairs])
    params = params or SamplingParams(max_tokens=48, temperature=0.7)
    results, transcripts = [], {}
    for name, llm in models:
        start = time.perf_counter()
        simulator = Simulator(llm, params, window, planner or IntentPlanner())
        records = simulate(simulator, agent, judge, pairs, conversations, max_turns, seed)
        scores, counts = conversation_scores(
            records, judge, llm, qa_questions, window, max_turns, seed, pools
        )
        rng = np.random.default_rng([seed, 99])
        personas = [r.profile.persona_id for r in records]
        results.append(
            ModelEval(
                model=name,
                conversations=len(records),
                seconds=round(time.perf_counter() - start, 2),
                metrics={m: bootstrap(v, rng, personas) for m, v in scores.items()},
                per_conversation=scores,
                personas=personas,
                judgements=counts,
            )
        )
        transcripts[name] = records
    differences = None
    if len(results) >= 2:
        first, last = results[0].per_conversation, results[-1].per_conversation
        rng = np.random.default_rng([seed, 98])
        personas = [r.profile.persona_id for r in next(iter(transcripts.values()))]
        differences = {
            m: paired_difference(first[m], last[m], rng, personas) for m in first if m in last
        }
    comparison = Comparison(
        models=results,
        differences=differences,
        judge=judge.name,
        agent=agent.name,
        max_turns=max_turns,
        seed=seed,
    )
    return comparison, transcripts


def format_interval(interval: Interval, signed: bool = False) -> str:
    if interval.mean is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{interval.mean:{sign}.3f} [{interval.low:{sign}.3f}, {interval.high:{sign}.3f}]"


def comparison_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (one row per metric): each model's
    interval, then its unreadable judgements ``unreadable/judgements (share)``, ``-`` for a
    metric that asks the judge nothing), then the paired difference."""
    header = ["metric"]
    for m in comparison.models:
        header += [m.model, f"{m.model} unreadable"]
    if comparison.differences is not None:
        header.append(f"{comparison.models[-1].model} - {comparison.models[0].model}")
    rows = []
    for metric in comparison.models[0].metrics:
        row = [metric]
        for m in comparison.models:
            count = m.judgements.get(metric, JudgementCount())
            row += [format_interval(m.metrics[metric]), count.text()]
        if comparison.differences is not None:
            row.append(format_interval(comparison.differences[metric], signed=True))
        rows.append(row)
    return header, rows
