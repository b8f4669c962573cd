"""Rewards for a simulated user's next line, as plain functions with TRL's reward
signature: ``reward(prompts, completions, **columns) -> list[float | None]``.

Each training row (:func:`personaevo.simulator.rollout.turn_prompts`) carries the columns
the rewards read: ``facts`` (profile facts and known information), ``persona_text``,
``goal``, ``statuses`` (goal-item statuses before the turn), ``earlier`` (the user's
earlier lines), ``intent``, ``turn``, ``max_turns`` and ``questions`` (Q&A probes). TRL
passes them as keyword lists and logs each function under its name. A judge other than
the rule judge, and the Q&A answerer, are bound with :func:`functools.partial` (TRL names a
partial after the function). ``None`` means "does not apply" or "no readable judgement"
(TRL averages without it; see the last section).

A row's ``kind`` is ``"turn"`` (the completion is the user's next line) or ``"probe"``
(the completion answers a Q&A probe asked right after a turn, see
:mod:`personaevo.simulator.pool`). On probe rows only ``qa_consistency`` applies: the
completion itself is graded.

All rewards lie in [0, 1]. For a line ``x`` (the stop marker removed for the checks):

* ``prompt_to_line = 1 - [x contradicts the persona]`` (Abdulhai et al.'s binary judge);
* ``line_to_line = 1 - (earlier lines x contradicts) / (earlier lines judged readably)``;
  None on turn 1;
* ``qa_consistency`` = share of the row's multiple-choice questions the answerer gets
  right when asked in persona right after ``x``; None without questions; on a probe row,
  1 if the completion picks the right option, else 0;
* ``intent_adherence = [x performs the turn's intent]``;
* ``goal_progress``: 0 if ``x`` makes a profile or policy item Misaligned, else 1 if it
  moves a task item from Incomplete to Attempted, else 1/2;
* ``no_leakage = 1 - [x states unknown information]``;
* ``role_fidelity = 1 - [x sounds like the agent or an AI assistant]``;
* ``stop_validity``: 0 if ``x`` stops while the goal state does not allow it (a task
  objective or requirement is not Complete and turns are left), 0 if the intent was
  ``end`` and ``x`` does not stop, else 1.

**Unreadable judgements.** A judge's verdict may be unreadable
(:class:`~personaevo.simulator.verdicts.Verdict`, an LLM judge's reply that is neither yes
nor no). It is no evidence either way, so every judge-based reward is computed from the
row's readable verdicts only: ``[...]`` above reads "the judge said yes", a share leaves
unreadable verdicts out of its numerator and denominator, ``no_leakage`` and
``goal_progress`` look only at readable verdicts (``goal_progress`` moves statuses on a
``yes`` only, see :func:`~personaevo.simulator.goals.after_user`). A row whose judgements
are *all* unreadable gets None: there is nothing to score, and any number would be made
up (1 would count it consistent, 0 inconsistent, 1/2 would still pull a mean towards the
middle). Evaluation averages without it and counts it; TRL's logged
``rewards/NAME/mean`` averages without it too. For the GRPO advantage it is not neutral:
TRL's default aggregation (sum, then normalise per group) sums a completion's weighted
rewards skipping None, so against the other completions of its group a None weighs like
a 0 for that reward (it would be neutral under ``normalize_then_sum``). The training log
therefore counts unreadable judgements per reward and step
(:mod:`personaevo.simulator.training`): more than a few mean the judge is unfit for
training. ``qa_consistency`` and ``stop_validity`` use no judge. A row whose reward asks
the judge nothing (``no_leakage`` without unknown information) is scored as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from personaevo.llm import LLM, Message
from personaevo.simulator.conditioning import STOP, clean_line
from personaevo.simulator.goals import Status, UserGoal, after_user
from personaevo.simulator.intents import Intent
from personaevo.simulator.judges import Judge, RuleJudge, UserLine
from personaevo.simulator.qa import MCQuestion, answer_questions, parse_letter
from personaevo.simulator.rollout import state_from
from personaevo.simulator.trait_fidelity import trait_fidelity
from personaevo.simulator.verdicts import JudgementCount, Verdict

RULES = RuleJudge()
Reward = Callable[..., list[float | None]]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion (a string, or a list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        return last["content"] if isinstance(last, dict) else getattr(last, "content", str(last))
    return str(completion)


def _lines(completions: Sequence[Any]) -> list[str]:
    return [clean_line(completion_text(c)) for c in completions]


def _plain(line: str) -> str:
    return line.replace(STOP, "").strip()


def _goal(value: Any) -> UserGoal:
    return value if isinstance(value, UserGoal) else UserGoal.model_validate(value)


def _per_row(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def _score_yes(verdict: Verdict, good: Verdict) -> float | None:
    """1 when the verdict is the good answer, 0 when it is the other one, None when it is
    unreadable (see the module docstring)."""
    if not verdict.readable:
        return None
    return 1.0 if verdict is good else 0.0


def turn_reward(fn: Reward) -> Reward:
    """Apply ``fn`` to the turn rows of a batch only (None on probe rows)."""

    @functools.wraps(fn)
    def wrapper(prompts, completions, kind=None, **columns):
        n = len(completions)
        if kind is None or all(k == "turn" for k in kind):
            return fn(prompts, completions, **columns)
        rows = [i for i, k in enumerate(kind) if k == "turn"]
        out: list[float | None] = [None] * n
        if rows:
            picked = {
                key: [value[i] for i in rows]
                if isinstance(value, list) and len(value) == n
                else value
                for key, value in columns.items()
            }
            values = fn([prompts[i] for i in rows], [completions[i] for i in rows], **picked)
            for i, value in zip(rows, values, strict=True):
                out[i] = value
        return out

    return wrapper


@turn_reward
def prompt_to_line(prompts, completions, facts, persona_text=None, judge: Judge = RULES, **_):
    lines = _lines(completions)
    texts = persona_text or [""] * len(lines)
    cases = [(f, t, _plain(x)) for f, t, x in zip(facts, texts, lines, strict=True)]
    return [_score_yes(v, good=Verdict.NO) for v in judge.contradicts_profile(cases)]


@turn_reward
def line_to_line(prompts, completions, earlier, judge: Judge = RULES, **_):
    lines = _lines(completions)
    cases, owners = [], []
    for i, (line, before) in enumerate(zip(lines, earlier, strict=True)):
        for old in before:
            cases.append((_plain(old), _plain(line)))
            owners.append(i)
    conflicts, readable = [0] * len(lines), [0] * len(lines)
    for owner, verdict in zip(owners, judge.contradicts_line(cases), strict=True):
        if verdict.readable:
            readable[owner] += 1
            conflicts[owner] += verdict is Verdict.YES
    return [1.0 - conflicts[i] / readable[i] if readable[i] else None for i in range(len(lines))]


def qa_consistency(
    prompts, completions, questions, kind=None, answerer: LLM | None = None, **_
) -> list[float | None]:
    kinds = kind or ["turn"] * len(completions)
    out: list[float | None] = [None] * len(completions)
    cases, owners = [], []
    for i, (prompt, completion, qs, k) in enumerate(
        zip(prompts, completions, questions, kinds, strict=True)
    ):
        qs = [q if isinstance(q, MCQuestion) else MCQuestion.model_validate(q) for q in qs]
        if not qs:
            continue
        if k == "probe":  # the completion is the answer
            picked_option = parse_letter(completion_text(completion), len(qs[0].options))
            out[i] = float(picked_option == qs[0].answer)
            continue
        if answerer is None:
            raise ValueError(
                "qa_consistency needs an answerer: functools.partial(qa_consistency, answerer=llm)"
            )
        context = [m if isinstance(m, Message) else Message.model_validate(m) for m in prompt]
        line = clean_line(completion_text(completion))
        for q in qs:
            cases.append((context, line, q))
            owners.append(i)
    right: dict[int, list[bool]] = {}
    for owner, ok in zip(owners, answer_questions(answerer, cases) if cases else [], strict=True):
        right.setdefault(owner, []).append(ok)
    for owner, oks in right.items():
        out[owner] = sum(oks) / len(oks)
    return out


@turn_reward
def intent_adherence(prompts, completions, intent, judge: Judge = RULES, **_):
    lines = _lines(completions)
    cases = [(x, Intent(i)) for x, i in zip(lines, intent, strict=True)]
    return [_score_yes(v, good=Verdict.YES) for v in judge.follows_intent(cases)]


@turn_reward
def goal_progress(
    prompts, completions, goal, statuses, facts, persona_text=None, judge: Judge = RULES, **_
):
    lines = _lines(completions)
    goals = [_goal(g) for g in goal]
    texts = persona_text or [""] * len(lines)
    checks = judge.user_checks(
        [
            UserLine(goal=g, facts=f, persona_text=t, line=_plain(x))
            for g, f, t, x in zip(goals, facts, texts, lines, strict=True)
        ]
    )
    out: list[float | None] = []
    for g, before, check in zip(goals, statuses, checks, strict=True):
        if check.judgements.unreadable == check.judgements.judgements:
            out.append(None)  # nothing readable (every line is asked the profile question)
            continue
        state = state_from(g, before)
        after = after_user(state, check)
        pairs = list(zip(state.items, after.items, strict=True))
        if any(b.status != Status.MISALIGNED and a.status == Status.MISALIGNED for b, a in pairs):
            out.append(0.0)
        elif any(b.status == Status.INCOMPLETE and a.status == Status.ATTEMPTED for b, a in pairs):
            out.append(1.0)
        else:
            out.append(0.5)
    return out


@turn_reward
def no_leakage(prompts, completions, goal, judge: Judge = RULES, **_):
    lines = _lines(completions)
    cases, owners = [], []
    for i, (g, line) in enumerate(zip(goal, lines, strict=True)):
        for unknown in _goal(g).instructions.unknown_info:
            cases.append((unknown, _plain(line)))
            owners.append(i)
    verdicts: list[list[Verdict]] = [[] for _ in lines]
    for owner, verdict in zip(owners, judge.leaks(cases), strict=True):
        verdicts[owner].append(verdict)
    out: list[float | None] = []
    for row in verdicts:
        readable = [v for v in row if v.readable]
        if row and not readable:
            out.append(None)
        else:
            out.append(0.0 if Verdict.YES in readable else 1.0)
    return out


@turn_reward
def role_fidelity(prompts, completions, judge: Judge = RULES, **_):
    lines = [_plain(x) for x in _lines(completions)]
    return [_score_yes(v, good=Verdict.NO) for v in judge.assistant_speak(lines)]


@turn_reward
def stop_validity(prompts, completions, goal, statuses, intent, turn, max_turns, **_):
    out = []
    for line, g, before, i, t, budget in zip(
        _lines(completions), goal, statuses, intent, turn, max_turns, strict=True
    ):
        allowed = state_from(_goal(g), before).tasks_complete() or t >= budget - 1
        stops = STOP in line
        if (stops and not allowed) or (Intent(i) == Intent.END and not stops):
            out.append(0.0)
        else:
            out.append(1.0)
    return out


REWARDS: dict[str, Reward] = {
    f.__name__: f
    for f in (
        prompt_to_line,
        line_to_line,
        qa_consistency,
        intent_adherence,
        goal_progress,
        no_leakage,
        role_fidelity,
        stop_validity,
    )
}
CONSISTENCY = ("prompt_to_line", "line_to_line", "qa_consistency")
OPTIONAL_REWARDS: dict[str, Reward] = {"trait_fidelity": turn_reward(trait_fidelity)}
"""Rewards outside the default set: each needs a model bound through ``bound`` (the
trait-fidelity reward a fitted scorer, :mod:`personaevo.simulator.trait_fidelity`)."""


def reward_functions(
    names: Sequence[str],
    judge: Judge | None = None,
    answerer: LLM | None = None,
    bound: dict[str, dict[str, Any]] | None = None,
) -> list[Reward]:
    """The named rewards, with ``judge`` and the Q&A ``answerer`` bound where they apply,
    and ``bound[name]`` as keyword arguments of an optional reward."""
    known = {**REWARDS, **OPTIONAL_REWARDS}
    out = []
    for name in names:
        if name not in known:
            raise ValueError(f"unknown reward {name!r} (known: {', '.join(known)})")
        fn = known[name]
        if name in OPTIONAL_REWARDS:
            fn = functools.partial(fn, **(bound or {}).get(name, {}))
        elif name == "qa_consistency":
            fn = functools.partial(fn, answerer=answerer)
        elif judge is not None and name != "stop_validity":
            fn = functools.partial(fn, judge=judge)
        out.append(fn)
    return out


class CountedReward:
    """A reward function that also counts the judge's verdicts behind its values.

    Calling it calls ``fn``; ``count`` then grows by the verdicts ``judge`` gave during the
    call (``judge.tally`` after minus before), unreadable ones counted apart. ``__name__``
    is the reward's name, which is what TRL logs it under."""

    def __init__(self, name: str, fn: Reward, judge: Judge) -> None:
        self.__name__ = name
        self.fn, self.judge = fn, judge
        self.count = JudgementCount()

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        before = self.judge.tally.model_copy()
        values = self.fn(prompts, completions, **columns)
        self.count = self.count + (self.judge.tally - before)
        return values


def counted_reward_functions(
    names: Sequence[str],
    judge: Judge | None = None,
    answerer: LLM | None = None,
    bound: dict[str, dict[str, Any]] | None = None,
) -> list[CountedReward]:
    """:func:`reward_functions`, each wrapped in a :class:`CountedReward` (the rewards that
    ask no judge, ``qa_consistency``, ``stop_validity`` and the optional ones, count zero
    judgements)."""
    used = judge if judge is not None else RULES
    funcs = reward_functions(names, judge, answerer, bound)
    return [CountedReward(name, fn, used) for name, fn in zip(names, funcs, strict=True)]
