"""Independent evaluation: measures a simulator was not trained on, beside its rewards.

Training rewards a simulator with a judge against an agent; scoring it with the same
judge against the same agent only checks that training optimised what it was told to.
:func:`evaluate_independently` adds three measures the policy never saw:

1. **Other agents.** The same models, personas, goals and seeds against every agent in
   ``agents`` (e.g. the scripted agent, which reads the goal state, and an
   :class:`~personaevo.simulator.agents.LLMAgent`, which sees only the conversation and
   a system prompt from the goal's domain): one
   :class:`~personaevo.simulator.evaluation.Comparison` per agent.
2. **A held-out judge** (an LLM judge of another model than the policy, checked with
   :func:`~personaevo.simulator.models.check_heldout_judge`): the same conversations
   re-scored. Every judge-based turn metric (:data:`JUDGED`) is recomputed with it, and
   the goal state is re-tracked from the greeting with its verdicts
   (:func:`retrack`), giving ``goal_alignment`` and ``task_completion`` under the held-out
   judge. Intervals resample personas as in :mod:`personaevo.simulator.evaluation`.
3. **Trait fidelity** (:mod:`personaevo.simulator.trait_fidelity`) of each model's
   conversations with the first agent, and the **behavioural diversity** of its users
   (:mod:`personaevo.simulator.behaviour`), both needing no model call. Trait fidelity is
   measured within each model's conversations (grouped k-fold by persona) and, given a
   classifier fitted on other conversations (``trait_classifier``, e.g. the untrained
   model's), also as that classifier's accuracy on each model's conversations
   (``trait_transfer``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from personaevo.llm import LLM, SamplingParams
from personaevo.simulator.agents import Agent
from personaevo.simulator.behaviour import BehaviourComparison, compare_behaviour
from personaevo.simulator.conditioning import known_facts, persona_text
from personaevo.simulator.evaluation import (
    Comparison,
    ModelEval,
    bootstrap,
    conversation_scores,
    evaluate_simulators,
    format_interval,
)
from personaevo.simulator.goals import GoalState, UserGoal, after_agent, after_user
from personaevo.simulator.judges import Judge, UserLine
from personaevo.simulator.pool import value_pools
from personaevo.simulator.profiles import Profile
from personaevo.simulator.rollout import ConversationRecord
from personaevo.simulator.simulator import IntentPlanner
from personaevo.simulator.trait_fidelity import (
    TraitClassifier,
    TraitFidelity,
    evaluate_trait_fidelity,
)
from personaevo.simulator.verdicts import JudgementCount
from personaevo.spaces import TraitSpace

JUDGED = (
    "prompt_to_line",
    "line_to_line",
    "intent_adherence",
    "goal_progress",
    "no_leakage",
    "role_fidelity",
)
"""The turn metrics that ask a judge (``qa_consistency`` and ``stop_validity`` do not)."""


class HeldOutScores(ModelEval):
    """One model's conversations with one agent, scored by the held-out judge (``seconds``:
    the re-scoring's)."""

    judge: str
    agent: str


class IndependentEval(BaseModel):
    comparisons: list[Comparison]  # one per agent
    heldout: list[HeldOutScores]  # per agent, per model
    trait_fidelity: list[TraitFidelity]  # per model, conversations with the first agent
    trait_transfer: list[TraitFidelity] = []  # per model, scored by a given classifier
    behaviour: BehaviourComparison  # per model, conversations with the first agent


def retrack(
    records: Sequence[ConversationRecord], judge: Judge
) -> tuple[list[float], list[float], JudgementCount]:
    """Replay each conversation's goal state from the start with ``judge``'s verdicts
    (user lines: :meth:`Judge.user_checks`, agent lines: :meth:`Judge.agent_checks`, in
    turn order, batched across conversations); returns the final alignment, task
    completion (1 or 0) per conversation, and the judge's verdicts."""
    before = judge.tally.model_copy()
    states = [GoalState.initial(r.goal) for r in records]
    longest = max((len(r.turns) for r in records), default=0)
    for k in range(1, longest):  # turn 0 is the agent's greeting
        at = [i for i, r in enumerate(records) if k < len(r.turns)]
        users = [i for i in at if records[i].turns[k].role == "user"]
        agents = [i for i in at if records[i].turns[k].role != "user"]
        cases = [
            UserLine(
                goal=records[i].goal,
                facts=known_facts(records[i].profile, records[i].goal),
                persona_text=persona_text(records[i].profile, records[i].goal),
                line=records[i].turns[k].text,
            )
            for i in users
        ]
        for i, check in zip(users, judge.user_checks(cases), strict=True):
            states[i] = after_user(states[i], check)
        done = judge.agent_checks([(records[i].goal, records[i].turns[k].text) for i in agents])
        for i, accomplished in zip(agents, done, strict=True):
            states[i] = after_agent(states[i], accomplished)
    alignment = [s.alignment() for s in states]
    completion = [1.0 if s.tasks_complete() else 0.0 for s in states]
    return alignment, completion, judge.tally - before


def heldout_scores(
    records: Sequence[ConversationRecord],
    judge: Judge,
    window: int,
    max_turns: int,
    seed: int,
    pools: dict[str, list[str]] | None = None,
) -> HeldOutScores:
    """:data:`JUDGED` metrics and the re-tracked goal metrics of ``records`` under
    ``judge`` (see the module docstring)."""
    start = time.perf_counter()
    scores, counts = conversation_scores(records, judge, None, 0, window, max_turns, seed, pools)
    kept = {m: scores[m] for m in JUDGED}
    judgements = {m: counts[m] for m in JUDGED}
    alignment, completion, tracked = retrack(records, judge)
    kept["goal_alignment"], kept["task_completion"] = alignment, completion
    judgements["goal_alignment"] = judgements["task_completion"] = tracked
    personas = [r.profile.persona_id for r in records]
    rng = np.random.default_rng([seed, 97])
    return HeldOutScores(
        judge=judge.name,
        agent=records[0].agent if records else "",
        model=records[0].simulator if records else "",
        conversations=len(records),
        seconds=round(time.perf_counter() - start, 2),
        metrics={m: bootstrap(v, rng, personas) for m, v in kept.items()},
        per_conversation=kept,
        personas=personas,
        judgements=judgements,
    )


def evaluate_independently(
    models: Sequence[tuple[str, LLM]],
    pairs: Sequence[tuple[Profile, UserGoal]],
    agents: Sequence[Agent],
    judge: Judge,
    heldout_judge: Judge | None = None,
    space: TraitSpace | None = None,
    conversations: int = 32,
    max_turns: int = 6,
    seed: int = 0,
    qa_questions: int = 1,
    window: int = 6,
    planner: IntentPlanner | None = None,
    params: SamplingParams | None = None,
    trait_folds: int = 5,
    trait_classifier: TraitClassifier | None = None,
) -> tuple[IndependentEval, dict[str, dict[str, list[ConversationRecord]]]]:
    """Play every model against every agent and add the independent measures (module
    docstring); returns the report and the records per agent name, per model name.
    Trait fidelity needs ``space`` (the personas' space) and at least two personas; it is
    left out otherwise."""
    if not agents:
        raise ValueError("evaluate_independently needs at least one agent")
    comparisons, heldout, transcripts = [], [], {}
    pools = value_pools([p for p, _ in pairs], [g for _, g in pairs])
    for agent in agents:
        comparison, records = evaluate_simulators(
            models, pairs, agent, judge, conversations, max_turns, seed, qa_questions, window,
            planner, params,
        )  # fmt: skip
        comparisons.append(comparison)
        transcripts[agent.name] = records
        if heldout_judge is not None:
            for name, recs in records.items():
                scored = heldout_scores(recs, heldout_judge, window, max_turns, seed, pools)
                heldout.append(scored.model_copy(update={"model": name, "agent": agent.name}))
    first = transcripts[agents[0].name]
    fidelity = []
    if space is not None and len({p.persona_id for p, _ in pairs}) >= 2:
        for name, recs in first.items():
            found = evaluate_trait_fidelity(recs, space, trait_folds, seed)
            fidelity.append(found.model_copy(update={"simulator": name}))
    transfer = []
    if trait_classifier is not None:
        for name, recs in first.items():
            transfer.append(
                trait_classifier.score(recs, seed).model_copy(update={"simulator": name})
            )
    report = IndependentEval(
        comparisons=comparisons,
        heldout=heldout,
        trait_fidelity=fidelity,
        trait_transfer=transfer,
        behaviour=compare_behaviour(first, seed=seed),
    )
    return report, transcripts


def agent_rows(report: IndependentEval) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the agents side by side: one row per metric, one column per
    (model, agent), each the mean [95% CI]."""
    columns = [(m.model, c.agent, m) for c in report.comparisons for m in c.models]
    header = ["metric", *(f"{model} / {agent}" for model, agent, _ in columns)]
    metrics = list(columns[0][2].metrics) if columns else []
    rows = [[name, *(format_interval(m.metrics[name]) for _, _, m in columns)] for name in metrics]
    return header, rows


def heldout_rows(report: IndependentEval) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the held-out judge's table: one row per metric, one column per
    (agent, model)."""
    header = ["metric", *(f"{h.model} / {h.agent}" for h in report.heldout)]
    metrics = list(report.heldout[0].metrics) if report.heldout else []
    rows = [[m, *(format_interval(h.metrics[m]) for h in report.heldout)] for m in metrics]
    rows.append(["unreadable (all metrics)", *(_unreadable(h) for h in report.heldout)])
    return header, rows


def _unreadable(scores: HeldOutScores) -> str:
    return sum(scores.judgements.values(), JudgementCount()).text()


def fidelity_rows(found_sets: Sequence[TraitFidelity]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a trait-fidelity table: one row per axis, per model its
    balanced accuracy with its interval, and chance."""
    header = ["axis", "chance", *(f.simulator for f in found_sets)]
    axes: dict[str, list[str]] = {}
    chance: dict[str, str] = {}
    for k, found in enumerate(found_sets):
        for axis in found.axes:
            row = axes.setdefault(axis.axis, ["n/a"] * len(found_sets))
            if axis.balanced_accuracy is not None:
                row[k] = f"{axis.balanced_accuracy:.3f} [{axis.low:.3f}, {axis.high:.3f}]"
                chance[axis.axis] = f"{axis.chance:.3f}"
            else:
                row[k] = f"n/a ({axis.note})"
    return header, [[a, chance.get(a, "n/a"), *row] for a, row in axes.items()]
