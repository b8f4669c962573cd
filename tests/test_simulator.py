"""User simulators without a language model: intents, profiles, goals and their states,
rollouts with scripted models, judges, rewards, Q&A, curriculum and evaluation."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _personas import RETAIL

from personaevo.errors import FileFieldsError, InputError
from personaevo.llm import ScriptedLLM
from personaevo.personas import Persona
from personaevo.simulator import (
    STOP,
    GoalState,
    GoalTemplate,
    Intent,
    IntentPlanner,
    LLMJudge,
    RuleJudge,
    ScriptedAgent,
    Simulator,
    Status,
    TemplateSimulator,
    evaluate_simulators,
    goals_for_profiles,
    load_goals,
    parse_intent,
    profile_from_persona,
    read_records,
    reward_functions,
    simulate,
    write_records,
)
from personaevo.simulator.curriculum import Curriculum, centre, trait_difficulty
from personaevo.simulator.evaluation import bootstrap, comparison_rows
from personaevo.simulator.goal_files import builtin_goal_path
from personaevo.simulator.goals import UserChecks, after_agent, after_user
from personaevo.simulator.intents import detect_intents
from personaevo.simulator.profiles import extract_facts, fact_conflicts
from personaevo.simulator.qa import answer_questions, make_questions, parse_letter
from personaevo.simulator.rewards import REWARDS
from personaevo.simulator.rollout import turn_prompts
from personaevo.simulator.sources import load_personas
from personaevo.simulator.verdicts import Verdict


@pytest.fixture(scope="module")
def template() -> GoalTemplate:
    return GoalTemplate.load(builtin_goal_path("template"))


@pytest.fixture(scope="module")
def pair(customer_support, template):
    profile = profile_from_persona(Persona(id="p1", traits=RETAIL), customer_support, seed=0)
    return profile, template.compose(profile, seed=0)


def scripted_user(lie: bool = False) -> ScriptedLLM:
    """A user that follows the intent in the prompt; ``lie`` states a wrong age and order."""

    def reply(text: str) -> str:
        intent = re.search(r"Intent: (\w+)", text).group(1)
        return {
            "request": "I want a refund for it, please.",
            "inform": "My order id is #W0000. I'm 99." if lie else "Here are the details.",
            "end": f"Thanks, bye. {STOP}",
            "complain": "This is ridiculous.",
            "confirm": "Yes, that's right.",
            "express_emotion": "I'm so upset.",
            "clarify": "I mean, I want a refund.",
        }.get(intent, "Okay.")

    return ScriptedLLM(reply, name="liar" if lie else "honest")


# --- intents and profiles ------------------------------------------------------------


def test_intent_taxonomy_rejects_unknown_names():
    assert parse_intent(" Request ") is Intent.REQUEST
    with pytest.raises(InputError, match=r"--intents: unknown intent 'haggle'.*inform, request"):
        parse_intent("haggle", "--intents")
    with pytest.raises(InputError, match="haggle"):
        IntentPlanner(["request", "haggle"])


def test_intent_cues():
    assert Intent.REQUEST in detect_intents("Can you help me?")
    assert {Intent.CONFIRM, Intent.INFORM} <= detect_intents("Yes, my order id is #W12.")
    assert detect_intents(f"Bye {STOP}") == {Intent.END}
    assert Intent.COMPLAIN not in detect_intents("I want a refund.")


def test_profiles_are_derived_deterministically_for_every_builtin_space(tiny):
    from personaevo.simulator.profiles import CORE_FIELDS
    from personaevo.spaces import builtin_space_names, load_space

    for name in builtin_space_names():
        space = load_space(name)
        traits = space.grid.to_traits(np.full((1, space.dim), 0.5) * 0)[0]
        persona = Persona(id="a", traits=traits)
        first = profile_from_persona(persona, space, seed=3)
        assert tuple(first.facts)[:4] == CORE_FIELDS
        assert first == profile_from_persona(persona, space, seed=3)
    band = profile_from_persona(Persona(id="x", traits=RETAIL), load_space("customer_support"))
    assert 35 <= band.facts["age"] <= 44
    mh = profile_from_persona(
        Persona(id="y", traits={"age": 70.4, "employment": "retired"}), None, seed=0
    )
    assert mh.facts["age"] == 70 and mh.facts["occupation"] == "retired"
    other_seed = [profile_from_persona(Persona(id="x", traits=RETAIL), None, s) for s in range(6)]
    assert len({p.facts["name"] for p in other_seed}) > 1


def test_profile_facts_from_the_persona_win_over_derivation():
    persona = Persona(
        id="z",
        traits={"age_band": "18-24"},
        description="A 72-year-old retired teacher. I live in Lyon.",
        profile={"name": "Ada Byron", "job": "engineer", "pet": "cat"},
    )
    profile = profile_from_persona(persona, None, seed=0)
    assert profile.facts["name"] == "Ada Byron"
    assert profile.facts["occupation"] == "engineer"
    assert profile.facts["age"] == 72
    assert profile.facts["location"] == "Lyon"
    assert profile.facts["pet"] == "cat"


def test_fact_extraction_and_conflicts():
    facts = extract_facts("Hi, my name is Maria Lopez. I'm 34 and I work as a nurse in town.")
    assert facts["name"] == "Maria Lopez" and facts["age"] == 34
    assert facts["occupation"] == "nurse"
    assert extract_facts("I'm 5 minutes late") == {}
    assert extract_facts("My order id is #W2047.")["order_id"] == "#W2047"
    truth = {"name": "Maria Lopez", "age": 34, "occupation": "nurse", "order_id": "#W2047"}
    assert fact_conflicts({"name": "Maria", "age": 34}, truth) == []
    assert fact_conflicts({"name": "Olga", "age": 35, "order_id": "#W1"}, truth) == [
        "name",
        "age",
        "order_id",
    ]


# --- goals ---------------------------------------------------------------------------


def test_builtin_goal_files_load():
    goals = load_goals("customer_support")
    assert [g.id for g in goals][:1] == ["refund_broken_blender"]
    assert goals[0].items()[0][1].text.startswith("Keep to your profile facts")


def test_bad_goal_file_names_file_and_field(tmp_path):
    bad = [
        {"id": "a", "instructions": {"reason_for_call": "x"}},
        {
            "id": "b",
            "instructions": {"reason_for_call": "x"},
            "task_objectives": [{"text": "t", "mention": ["(unclosed"]}],
        },
        {
            "id": "c",
            "instructions": {"reason_for_call": "x"},
            "task_objectives": [
                {"text": "t", "complete_when": ["refund issued"], "agent_example": "no"}
            ],
        },
    ]
    path = tmp_path / "goals.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(FileFieldsError) as err:
        load_goals(path)
    message = str(err.value)
    assert f"{path}: goals[0].task_objectives" in message
    assert "goals[1].task_objectives.0.mention" in message and "regular expression" in message
    assert "goals[2]" in message and "agent_example" in message
    with pytest.raises(InputError, match="no such goal file"):
        load_goals(tmp_path / "missing.json")


def test_template_fills_placeholders_and_escapes_regex(pair, tmp_path):
    profile, goal = pair
    order = goal.instructions.known_info["order_id"]
    assert re.fullmatch(r"#W\d{4}", order)
    assert goal.requirements[0].mention == [order]
    assert goal.id == "retail_refund:p1"
    dotted = tmp_path / "d.yaml"
    dotted.write_text(
        "variables: {thing: [a.b]}\ntemplates:\n  - goal: {id: g, instructions: "
        "{reason_for_call: 'my ${thing}'}, task_objectives: [{text: '${thing}', "
        "mention: ['${thing}\\d']}]}\n"
    )
    filled = GoalTemplate.load(dotted).compose(profile)
    assert filled.instructions.reason_for_call == "my a.b"
    assert filled.task_objectives[0].mention == [r"a\.b\d"]
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "templates:\n  - goal: {id: g, instructions: {reason_for_call: 'hi ${nickname}'},"
        " task_objectives: [t]}\n"
    )
    with pytest.raises(InputError, match=r"unknown placeholder \$\{nickname\}"):
        GoalTemplate.load(bad).compose(profile)


def test_goal_state_transitions(pair):
    _, goal = pair
    state = GoalState.initial(goal)
    kinds = [i.kind for i in state.items]
    behaviour = kinds.count("profile") + kinds.count("policy")
    assert kinds == ["profile", "policy", "policy", "task_objectives", "requirements"]
    assert state.alignment() == pytest.approx(behaviour / 5) and state.progress() == 0.6
    n = len(state.items)
    objective = kinds.index("task_objectives")
    attempted = [Verdict.of(k == objective) for k in range(n)]
    after = after_user(
        state, UserChecks(attempted=attempted, violated=[Verdict.NO] * n, leaks_unknown=Verdict.YES)
    )
    statuses = [i.status for i in after.items]
    assert statuses[objective] == Status.ATTEMPTED
    assert Status.MISALIGNED in statuses  # the implicit unknown-information item
    done = after_agent(after, [Verdict.YES] * n)
    assert done.tasks_complete()
    assert [i.status for i in done.items][: kinds.count("profile")] == [Status.ALIGNED]
    assert done.progress() == pytest.approx((n - 1) / n)


# --- rollouts, judges, rewards ---------------------------------------------------------


def test_rollout_tracks_goal_and_stops(pair, tmp_path):
    records = simulate(
        Simulator(scripted_user()), ScriptedAgent(), RuleJudge(), [pair], 2, max_turns=8
    )
    record = records[0]
    assert record.turns[0].role == "agent"
    assert record.stop_reason == "stop_marker"
    assert next(t.intent for t in record.turns if t.role == "user") == Intent.REQUEST
    assert all(t.statuses and len(t.statuses) == len(pair[1].items()) for t in record.turns)
    path = tmp_path / "r.jsonl"
    write_records(path, records)
    assert read_records(path) == records
    budget = simulate(
        Simulator(ScriptedLLM(lambda _: "Hmm.")), ScriptedAgent(), RuleJudge(), [pair], 1, 3
    )
    assert budget[0].stop_reason == "turn_budget"
    assert sum(t.role == "user" for t in budget[0].turns) == 3


def test_llm_agent_sees_the_conversation_in_chat_roles(pair):
    from personaevo.simulator import LLMAgent

    seen = []

    def agent_reply(last: str) -> str:
        seen.append(last)
        return "Thank you, I found your order. Your refund has been issued."

    agent = LLMAgent(ScriptedLLM(agent_reply))
    records = simulate(TemplateSimulator(), agent, RuleJudge(), [pair], 1, 4)
    assert records[0].agent.startswith("llm:") and STOP not in "".join(seen)
    assert seen[0].startswith("I ") and records[0].stop_reason == "stop_marker"
    assert records[0].alignment == 1.0


def test_template_simulator_completes_its_goals(pair):
    records = simulate(TemplateSimulator(), ScriptedAgent(), RuleJudge(), [pair], 4, 8)
    assert all(r.stop_reason == "stop_marker" and r.alignment == 1.0 for r in records)


def test_rewards_follow_their_definitions(pair):
    records = simulate(Simulator(scripted_user()), ScriptedAgent(), RuleJudge(), [pair], 1, 8)
    rows = turn_prompts(records[0], window=6, max_turns=8)
    inform = next(r for r in rows if r["intent"] == "inform")
    order = pair[1].instructions.known_info["order_id"]
    completions = [
        [{"role": "assistant", "content": f"My order id is {order}."}],
        [{"role": "assistant", "content": "My order id is #W0000. I'm 99 years old."}],
        [{"role": "assistant", "content": "How can I help you today? The refund is $40."}],
        [{"role": "assistant", "content": f"Bye {STOP}"}],
    ]
    columns = {k: [v] * len(completions) for k, v in inform.items() if k != "prompt"}
    columns["questions"] = [[]] * len(completions)
    prompts = [inform["prompt"]] * len(completions)
    names = [n for n in REWARDS if n != "qa_consistency"]
    got = {
        name: fn(prompts, completions, **columns, trainer_state=None)
        for name, fn in zip(names, reward_functions(names), strict=True)
    }
    assert got["prompt_to_line"] == [1.0, 0.0, 1.0, 1.0]
    assert got["intent_adherence"][:2] == [1.0, 1.0] and got["intent_adherence"][3] == 0.0
    assert got["goal_progress"][0] == 1.0 and got["goal_progress"][1] == 0.0
    assert got["no_leakage"] == [1.0, 1.0, 0.0, 1.0]
    assert got["role_fidelity"] == [1.0, 1.0, 0.0, 1.0]
    assert got["stop_validity"] == [1.0, 1.0, 1.0, 0.0]
    earlier = inform["earlier"]
    assert earlier and got["line_to_line"] == [1.0] * 4
    lied = ["My name is Zed Quux."] * 1
    l2l = REWARDS["line_to_line"]([""], ["My name is Ada Byron."], earlier=[lied])
    assert l2l == [0.0]
    assert REWARDS["line_to_line"]([""], ["Hi"], earlier=[[]]) == [None]


def test_probe_rows_grade_the_answer_and_skip_turn_rewards(pair):
    from personaevo.simulator.rewards import qa_consistency

    profile, goal = pair
    facts = {**profile.facts, **goal.instructions.known_info}
    q = make_questions(facts, np.random.default_rng(1), k=1)[0]
    wrong = "ABCD"[(q.answer + 1) % 4]
    completions = [q.answer_letter, f"{wrong})", "I want a refund."]
    kind = ["probe", "probe", "turn"]
    questions = [[q.model_dump()], [q.model_dump()], []]
    assert qa_consistency([[]] * 3, completions, questions, kind=kind) == [1.0, 0.0, None]
    intents = ["inform", "inform", "request"]
    got = REWARDS["intent_adherence"]([[]] * 3, completions, intent=intents, kind=kind)
    assert got == [None, None, 1.0]


def test_llm_judge_parses_yes_and_no(pair):
    answers = iter(["Yes.", "no", "maybe"])
    judge = LLMJudge(ScriptedLLM(lambda _: next(answers)))
    verdicts = judge.assistant_speak(["a", "b", "c"])
    assert verdicts == [Verdict.YES, Verdict.NO, Verdict.UNREADABLE]
    assert (judge.tally.judgements, judge.tally.unreadable) == (3, 1)
    records = simulate(
        Simulator(scripted_user()),
        ScriptedAgent(),
        LLMJudge(ScriptedLLM(lambda _: "no")),
        [pair],
        1,
        3,
    )
    assert records[0].judge.startswith("llm:")


def test_questions_are_graded_exactly(pair):
    profile, goal = pair
    facts = {**profile.facts, **goal.instructions.known_info}
    questions = make_questions(facts, np.random.default_rng(0), k=3)
    assert len(questions) == 3 and len({q.field for q in questions}) == 3
    assert make_questions(facts, np.random.default_rng(0), k=0) == []
    for q in questions:
        assert q.options[q.answer] == str(facts[q.field]) and len(set(q.options)) == 4
    assert parse_letter("(b)") == 1 and parse_letter("A) 34") == 0 and parse_letter("none") is None

    def oracle(text: str) -> str:
        q = next(q for q in questions if q.question in text)
        return q.answer_letter

    cases = [([], "hello", q) for q in questions]
    assert answer_questions(ScriptedLLM(oracle), cases) == [True] * 3
    assert answer_questions(ScriptedLLM(lambda _: "Z"), cases) == [False] * 3


# --- curriculum and evaluation -----------------------------------------------------------


def test_curriculum_schedules(customer_support):
    easy = dict(RETAIL, emotional_state="calm", patience="medium", age_band="25-34")
    assert trait_difficulty(RETAIL, customer_support) > trait_difficulty(easy, customer_support)
    assert centre("moderate-first", 0) == 0.5 and centre("moderate-first", 1) == 1.0
    assert centre("hardest-first", 0) == 1.0 and centre("hardest-first", 1) == 0.5
    with pytest.raises(ValueError, match="unknown curriculum"):
        centre("easiest-first", 0)
    curriculum = Curriculum(list(np.linspace(0, 1, 11)), "moderate-first")
    assert int(np.argmax(curriculum.weights(0.0))) == 5
    assert int(np.argmax(curriculum.weights(1.0))) == 10
    hard = Curriculum(list(np.linspace(0, 1, 11)), "hardest-first")
    assert int(np.argmax(hard.weights(0.0))) == 10
    draws = hard.sample(0.0, 200, np.random.default_rng(0))
    assert np.mean(draws >= 8) > 0.8


def test_rarity_sets_difficulty_else_the_population_does():
    from personaevo.simulator.curriculum import difficulties, difficulty

    persona = Persona.model_validate({"id": "r", "traits": {"age": 30}, "rarity": 0.9})
    assert difficulty(profile_from_persona(persona), None) == 0.9
    common = [{"mood": "calm", "age": 30 + i} for i in range(9)]
    people = [Persona(id=f"q{i}", traits=t) for i, t in enumerate([*common, {"mood": "angry"}])]
    found = difficulties([profile_from_persona(p) for p in people], None)
    assert found[-1] == max(found) and found[-1] > 0.5 > found[0]


def test_bootstrap_interval():
    values = list(np.random.default_rng(0).normal(0.5, 0.1, 200))
    interval = bootstrap(values, np.random.default_rng(1))
    assert interval.low < interval.mean < interval.high and interval.n == 200
    assert interval.high - interval.low < 0.05
    assert bootstrap([None, None], np.random.default_rng(1)).mean is None


def test_evaluation_separates_an_honest_from_a_lying_simulator(pair, customer_support, template):
    profiles = [
        profile_from_persona(Persona(id=f"p{i}", traits=RETAIL), customer_support, seed=i)
        for i in range(4)
    ]
    pairs = list(zip(profiles, goals_for_profiles(profiles, None, template), strict=True))
    comparison, transcripts = evaluate_simulators(
        [("honest", scripted_user()), ("liar", scripted_user(lie=True))],
        pairs,
        ScriptedAgent(),
        RuleJudge(),
        conversations=8,
        max_turns=6,
        qa_questions=0,
    )
    honest, liar = comparison.models
    assert honest.metrics["prompt_to_line"].mean == 1.0
    assert liar.metrics["prompt_to_line"].mean < 1.0
    diff = comparison.differences["prompt_to_line"]
    assert diff.high < 0
    header, rows = comparison_rows(comparison)
    models = ["honest", "honest unreadable", "liar", "liar unreadable"]
    assert header == ["metric", *models, "liar - honest"]
    assert {r[0] for r in rows} >= {"prompt_to_line", "goal_alignment", "line_to_line"}
    by_metric = {r[0]: r for r in rows}
    turns = sum(len(r.user_turn_indices()) for r in transcripts["honest"])
    assert by_metric["prompt_to_line"][2] == f"0/{turns} (0.0%)"  # the rule judge reads all
    assert by_metric["stop_validity"][2] == "-"  # asks the judge nothing
    assert len(transcripts["liar"]) == 8


# --- inputs --------------------------------------------------------------------------------


def test_invalid_persona_file_is_reported_with_records(tmp_path, customer_support):
    path = tmp_path / "p.jsonl"
    good = {"id": "a", "traits": RETAIL}
    bad = {"id": "b", "traits": dict(RETAIL, patience="saintly")}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\nnot json\n")
    with pytest.raises(InputError) as err:
        load_personas(path, customer_support)
    message = str(err.value)
    assert "record 2 (id b): patience" in message and "record 3" in message
    assert "2 of 3 records are invalid" in message
    with pytest.raises(InputError, match="record 3: malformed"):
        load_personas(path)


def test_a_run_source_must_be_a_run_directory(tmp_path):
    """A run's personas come through its export (tests/test_simulator_data.py); here only
    what is not a run."""
    from personaevo.simulator import load_profiles

    with pytest.raises(InputError, match="not a personaevo run directory"):
        load_profiles(run=tmp_path)
    with pytest.raises(InputError, match="exactly one"):
        load_profiles()
