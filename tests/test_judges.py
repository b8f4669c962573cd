"""Unreadable judge replies: their own outcome, never folded into "no" (or "consistent").

The fake LLM judge here answers ``yes`` when a persona-contradiction question quotes a
line with the :data:`LIE`, something that is neither yes nor no when the question quotes
a line holding :data:`GIBBERISH`, and ``no`` otherwise."""

from __future__ import annotations

import itertools
import json
import re
from types import SimpleNamespace

import pytest
from _personas import RETAIL

from personaevo.llm import ScriptedLLM
from personaevo.personas import Persona
from personaevo.simulator import (
    GoalState,
    GoalTemplate,
    LLMJudge,
    RuleJudge,
    ScriptedAgent,
    Simulator,
    Status,
    evaluate_simulators,
    goals_for_profiles,
    profile_from_persona,
    simulate,
)
from personaevo.simulator.evaluation import comparison_rows
from personaevo.simulator.goal_files import builtin_goal_path
from personaevo.simulator.goals import (
    BEHAVIOUR_KINDS,
    UnknownInfo,
    UserChecks,
    after_agent,
    after_user,
)
from personaevo.simulator.judges import read_yes_no
from personaevo.simulator.rewards import REWARDS, CountedReward, counted_reward_functions
from personaevo.simulator.rollout import turn_prompts
from personaevo.simulator.verdicts import JudgementCount, Verdict

LIE = "I'm 99 years old."
GIBBERISH = "Blorp zint quazzle."
HONEST = "I want a refund for it, please."


def judge_reply(question: str) -> str:
    if GIBBERISH in question:
        return "Hmm, hard to say"
    if "contradict the persona" in question and LIE in question:
        return "Yes."
    return "No."


def gibberish_judge() -> LLMJudge:
    return LLMJudge(ScriptedLLM(judge_reply, name="fickle"))


@pytest.fixture(scope="module")
def pair(customer_support):
    template = GoalTemplate.load(builtin_goal_path("template"))
    profile = profile_from_persona(Persona(id="p1", traits=RETAIL), customer_support, seed=0)
    return profile, template.compose(profile, seed=0)


def turn_row(pair) -> dict:
    """A user-turn training row (with earlier lines) of a rule-judged conversation."""
    user = ScriptedLLM(lambda _: HONEST, name="user")
    records = simulate(Simulator(user), ScriptedAgent(), RuleJudge(), [pair], 1, 3)
    return turn_prompts(records[0], window=6, max_turns=3)[-1]


def columns_for(row: dict, n: int) -> tuple[list, dict]:
    columns = {k: [v] * n for k, v in row.items() if k not in ("prompt", "line")}
    return [row["prompt"]] * n, columns


# --- the verdict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Yes.", Verdict.YES),
        ("NO, it does not", Verdict.NO),
        ("  yes", Verdict.YES),
        ("maybe", Verdict.UNREADABLE),
        ("yesterday", Verdict.UNREADABLE),  # the first word, not a prefix
        ("", Verdict.UNREADABLE),
        ("...", Verdict.UNREADABLE),
        ("I think yes", Verdict.UNREADABLE),
    ],
)
def test_a_reply_is_yes_no_or_unreadable(reply, verdict):
    assert read_yes_no(reply) is verdict


def test_a_verdict_is_not_a_bool_and_combines_three_valued():
    with pytest.raises(TypeError, match="not a bool"):
        bool(Verdict.UNREADABLE)
    with pytest.raises(TypeError):
        if Verdict.NO:
            pass
    assert Verdict.any_of([Verdict.NO, Verdict.UNREADABLE, Verdict.YES]) is Verdict.YES
    assert Verdict.any_of([Verdict.NO, Verdict.UNREADABLE]) is Verdict.UNREADABLE
    assert Verdict.any_of([Verdict.NO, Verdict.NO]) is Verdict.NO
    assert Verdict.any_of([]) is Verdict.NO
    count = JudgementCount()
    count.add([Verdict.YES, Verdict.UNREADABLE, Verdict.NO, Verdict.UNREADABLE])
    assert (count.judgements, count.unreadable, count.unreadable_share) == (4, 2, 0.5)
    assert count.text() == "2/4 (50.0%)" and JudgementCount().text() == "-"
    assert JudgementCount().unreadable_share is None


def test_the_rule_judge_is_always_readable(pair):
    judge = RuleJudge()
    records = simulate(
        Simulator(ScriptedLLM(lambda _: GIBBERISH)), ScriptedAgent(), judge, [pair], 2, 3
    )
    assert judge.tally.judgements > 0 and judge.tally.unreadable == 0
    assert sum((r.judgements for r in records), JudgementCount()) == judge.tally


def test_an_unreadable_reply_is_reported_not_counted_as_no(pair):
    profile, goal = pair
    judge = gibberish_judge()
    facts = {**profile.facts, **goal.instructions.known_info}
    verdicts = judge.contradicts_profile([(facts, "", line) for line in (HONEST, LIE, GIBBERISH)])
    assert verdicts == [Verdict.NO, Verdict.YES, Verdict.UNREADABLE]
    assert (judge.tally.judgements, judge.tally.unreadable) == (3, 1)


# --- consumers --------------------------------------------------------------------------


def test_gibberish_is_not_scored_consistent(pair):
    """Under the old reading (anything but yes is no) the third value was 1.0."""
    row = turn_row(pair)
    completions = [HONEST, LIE, GIBBERISH]
    prompts, columns = columns_for(row, len(completions))
    judge = gibberish_judge()
    got = REWARDS["prompt_to_line"](prompts, completions, **columns, judge=judge)
    assert got == [1.0, 0.0, None]
    for name in ("role_fidelity", "intent_adherence", "goal_progress"):
        values = REWARDS[name](prompts, completions, **columns, judge=judge)
        assert values[2] is None and None not in values[:2], name


def test_line_to_line_over_a_mix_is_readable_consistent_over_readable():
    """Earlier lines: two readable (one contradicted) and two unreadable: 1 - 1/2, where
    folding unreadable into "no contradiction" gave 1 - 1/4."""

    def reply(question: str) -> str:
        first = re.search(r'first: "(.*)"', question).group(1)
        return {"E-yes": "yes", "E-no": "no"}.get(first, "perhaps")

    judge = LLMJudge(ScriptedLLM(reply))
    earlier = [["E-yes", "E-no", "E-odd", "E-odder"], ["E-odd"], []]
    got = REWARDS["line_to_line"]([[]] * 3, ["now"] * 3, earlier=earlier, judge=judge)
    assert got == [0.5, None, None]
    assert (judge.tally.judgements, judge.tally.unreadable) == (5, 3)


def test_no_leakage_uses_readable_verdicts_only(pair):
    _, goal = pair
    unknowns = [UnknownInfo(text="the refund amount"), UnknownInfo(text="the warehouse code")]
    instructions = goal.instructions.model_copy(update={"unknown_info": unknowns})
    two_unknowns = goal.model_copy(update={"instructions": instructions})
    columns = {"goal": [two_unknowns]}

    def judge_on(refund: str, warehouse: str) -> LLMJudge:
        return LLMJudge(ScriptedLLM(lambda q: warehouse if "warehouse" in q else refund))

    def no_leakage(judge: LLMJudge) -> list[float | None]:
        return REWARDS["no_leakage"]([[]], [HONEST], **columns, judge=judge)

    assert no_leakage(judge_on("no", "garble")) == [1.0]  # the readable "no" stands
    assert no_leakage(judge_on("yes", "garble")) == [0.0]
    assert no_leakage(judge_on("garble", "garble")) == [None]  # nothing readable
    assert no_leakage(judge_on("no", "no")) == [1.0]


def test_an_unreadable_check_moves_no_goal_status(pair):
    _, goal = pair
    state = GoalState.initial(goal)
    n = len(state.items)
    unreadable = UserChecks(
        attempted=[Verdict.UNREADABLE] * n,
        violated=[Verdict.UNREADABLE] * n,
        contradicts_profile=Verdict.UNREADABLE,
        leaks_unknown=Verdict.UNREADABLE,
    )
    assert after_user(state, unreadable) == state
    assert after_agent(state, [Verdict.UNREADABLE] * n) == state
    confirmed = UserChecks(
        attempted=[Verdict.YES] * n,
        violated=[Verdict.NO] * n,
        contradicts_profile=Verdict.YES,
        leaks_unknown=Verdict.UNREADABLE,
    )
    moved = [i.status for i in after_user(state, confirmed).items]
    assert moved[0] == Status.MISALIGNED  # the facts item, on the readable contradiction
    assert Status.ATTEMPTED in moved
    kinds = [kind for kind, _ in goal.items()]
    unknown_item = kinds.index("policy")
    assert moved[unknown_item] == Status.ALIGNED  # its only check was unreadable


def test_rollouts_count_the_unreadable_checks_that_tracked_the_goal(pair):
    _, goal = pair
    lines = itertools.cycle([GIBBERISH, HONEST])
    judge = gibberish_judge()
    records = simulate(
        Simulator(ScriptedLLM(lambda _: next(lines))), ScriptedAgent(), judge, [pair], 1, 4
    )
    items = goal.items()
    behaviour = sum(kind in BEHAVIOUR_KINDS for kind, _ in items)
    tasks = len(items) - behaviour
    explicit_behaviour = len(goal.profile) + len(goal.policy)
    per_gibberish_line = tasks + explicit_behaviour + 1 + len(goal.instructions.unknown_info)
    assert records[0].judgements.unreadable == 2 * per_gibberish_line  # turns 1 and 3
    assert records[0].judgements == judge.tally
    assert records[0].judgements.judgements > records[0].judgements.unreadable


# --- evaluation -------------------------------------------------------------------------


def test_evaluation_reports_unreadable_judgements_per_metric(customer_support):
    template = GoalTemplate.load(builtin_goal_path("template"))
    profiles = [
        profile_from_persona(Persona(id=f"p{i}", traits=RETAIL), customer_support, seed=i)
        for i in range(2)
    ]
    pairs = list(zip(profiles, goals_for_profiles(profiles, None, template), strict=True))
    # two conversations of three turns, lines dealt in call order: each conversation gets
    # one lie, one gibberish line and one honest line
    lines = itertools.cycle([LIE, GIBBERISH, HONEST])
    user = ScriptedLLM(lambda _: next(lines), name="mixed")
    comparison, transcripts = evaluate_simulators(
        [("mixed", user)],
        pairs,
        ScriptedAgent(),
        gibberish_judge(),
        conversations=2,
        max_turns=3,
        qa_questions=0,
    )
    (model,) = comparison.models
    said = [[t.text for t in r.turns if t.role == "user"] for r in transcripts["mixed"]]
    assert all(sorted(s) == sorted([LIE, GIBBERISH, HONEST]) for s in said)
    # readable consistent / readable = 1/2 per conversation (folding gave 2/3)
    assert model.per_conversation["prompt_to_line"] == [0.5, 0.5]
    assert model.metrics["prompt_to_line"].mean == 0.5
    counts = model.judgements
    assert (counts["prompt_to_line"].judgements, counts["prompt_to_line"].unreadable) == (6, 2)
    assert counts["role_fidelity"].unreadable == 2
    assert counts["stop_validity"].judgements == 0
    tracking = sum((r.judgements for r in transcripts["mixed"]), JudgementCount())
    assert counts["goal_alignment"] == tracking and tracking.unreadable > 0
    header, rows = comparison_rows(comparison)
    assert header[1:3] == ["mixed", "mixed unreadable"]
    by_metric = {r[0]: r for r in rows}
    assert by_metric["prompt_to_line"][2] == "2/6 (33.3%)"
    assert by_metric["stop_validity"][2] == "-"
    dumped = json.loads(comparison.model_dump_json())
    report = dumped["models"][0]["judgements"]["prompt_to_line"]
    assert report == {"judgements": 6, "unreadable": 2, "unreadable_share": pytest.approx(1 / 3)}


def test_eval_simulator_cli_prints_and_writes_the_unreadable_counts(
    monkeypatch, tmp_path, capsys, customer_support
):
    from personaevo.cli import main
    from personaevo.personas import write_personas
    from personaevo.simulator import models

    lines = itertools.cycle([LIE, GIBBERISH, HONEST])
    monkeypatch.setattr(models, "check_model_spec", lambda spec: None)
    monkeypatch.setattr(models, "open_model", lambda spec: ScriptedLLM(lambda _: next(lines)))
    monkeypatch.setattr(models, "open_judge", lambda spec: gibberish_judge())
    personas = tmp_path / "p.jsonl"
    write_personas(personas, [{"id": "p0", "traits": RETAIL}])
    report = tmp_path / "eval.json"
    argv = ["eval-simulator", "--model", "fake", "--personas", str(personas)]
    argv += ["--space", "customer_support", "--judge", "fake", "--conversations", "1"]
    argv += ["--turns", "3", "--qa-questions", "0", "--json", str(report)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out and "1/3 (33.3%)" in out
    written = json.loads(report.read_text())
    assert written["models"][0]["judgements"]["prompt_to_line"]["unreadable"] == 1


# --- training logs ----------------------------------------------------------------------


def test_counted_rewards_and_the_training_log_carry_unreadable_counts(pair):
    from personaevo.simulator.training_log import judgement_log_callback

    row = turn_row(pair)
    judge = gibberish_judge()
    names = ["prompt_to_line", "stop_validity"]
    funcs = counted_reward_functions(names, judge)
    assert all(isinstance(f, CountedReward) for f in funcs)
    assert [f.__name__ for f in funcs] == names  # TRL logs a reward under this name
    prompts, columns = columns_for(row, 3)
    for f in funcs:
        f(prompts, [HONEST, LIE, GIBBERISH], **columns)
    assert funcs[0].count == JudgementCount(judgements=3, unreadable=1)
    assert funcs[1].count == JudgementCount()

    state = SimpleNamespace(log_history=[{"reward": 0.5, "step": 1}])
    callback = judgement_log_callback(funcs)
    logs = {"reward": 0.5}
    callback.on_log(None, state, None, logs=logs)
    assert logs["unreadable/prompt_to_line"] == 1 and logs["judgements/prompt_to_line"] == 3
    assert "unreadable/stop_validity" not in logs  # it asks the judge nothing
    assert state.log_history[-1]["unreadable/prompt_to_line"] == 1
    funcs[0](prompts[:1], [GIBBERISH], **{k: v[:1] for k, v in columns.items()})
    logs = {"reward": 0.1}
    state.log_history.append({"reward": 0.1, "step": 2})
    callback.on_log(None, state, None, logs=logs)
    assert (logs["judgements/prompt_to_line"], logs["unreadable/prompt_to_line"]) == (1, 1)
