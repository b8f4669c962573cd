"""Independent evaluation of simulators: an agent that does not read the goal, a held-out
judge, persona-resampled intervals, trait fidelity and behavioural diversity."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from _personas import RETAIL

from personaevo.errors import InputError
from personaevo.llm import ScriptedLLM
from personaevo.personas import Persona, write_personas
from personaevo.simulator import (
    ConversationRecord,
    GoalTemplate,
    LLMAgent,
    RuleJudge,
    ScriptedAgent,
    TemplateSimulator,
    Turn,
    goals_for_profiles,
    profile_from_persona,
    simulate,
)
from personaevo.simulator.agents import AGENT_SYSTEM, AgentView, view_for
from personaevo.simulator.behaviour import FEATURES, compare_behaviour, fingerprint
from personaevo.simulator.evaluation import bootstrap, paired_difference
from personaevo.simulator.goal_files import builtin_goal_path
from personaevo.simulator.independent import JUDGED, evaluate_independently, retrack
from personaevo.simulator.models import check_heldout_judge, open_agent
from personaevo.simulator.rewards import reward_functions
from personaevo.simulator.trait_fidelity import (
    TraitScorer,
    band,
    evaluate_trait_fidelity,
    fit_trait_classifier,
    trait_bands,
)

STOP = "###STOP###"


@pytest.fixture(scope="module")
def template() -> GoalTemplate:
    return GoalTemplate.load(builtin_goal_path("template"))


def make_pairs(space, template, n: int, **traits):
    profiles = [
        profile_from_persona(Persona(id=f"p{i}", traits={**RETAIL, **traits}), space, seed=i)
        for i in range(n)
    ]
    return list(zip(profiles, goals_for_profiles(profiles, None, template), strict=True))


def scripted_user(name: str = "user") -> ScriptedLLM:
    """A user model that follows the intent named in its prompt."""

    def reply(text: str) -> str:
        found = re.search(r"Intent: (\w+)", text)
        intent = found.group(1) if found else ""
        return {
            "request": "I want a refund for it, please.",
            "inform": "Here are the details.",
            "end": f"Thanks, bye. {STOP}",
        }.get(intent, "Okay.")

    return ScriptedLLM(reply, name=name)


class RecordingLLM(ScriptedLLM):
    """A scripted model that keeps every conversation it was asked to answer."""

    def __init__(self, reply) -> None:
        super().__init__(reply, name="recorder")
        self.seen: list[list] = []

    def _chat(self, conversations, params):
        self.seen += conversations
        return super()._chat(conversations, params)


# --- the agent that does not read the goal ---------------------------------------------


def test_llm_agent_sees_only_the_conversation_and_the_domain(customer_support, template):
    pairs = make_pairs(customer_support, template, 1)
    goal = pairs[0][1]
    llm = RecordingLLM(lambda _: "Thank you, I found your order. Your refund has been issued.")
    records = simulate(TemplateSimulator(), LLMAgent(llm), RuleJudge(), pairs, 1, 4)
    assert llm.seen and records[0].agent.startswith("llm:")
    domain = goal.instructions.domain
    for conversation in llm.seen:
        assert conversation[0].role == "system"
        assert conversation[0].content == f"{AGENT_SYSTEM} Domain: {domain}."
        said = [t.text.replace(STOP, "").strip() for t in records[0].turns]
        assert all(m.content in said for m in conversation[1:])  # nothing but the lines
    hidden = [item.text for _, item in goal.items()] + [
        str(v) for v in goal.instructions.known_info.values()
    ]
    system = llm.seen[0][0].content
    assert not any(text in system for text in hidden)


def test_view_for_hides_the_goal_from_a_fair_agent(pair_view):
    goal, state, history, rng = pair_view
    fair = view_for(LLMAgent(ScriptedLLM(lambda _: "ok")), "retail", history, rng, goal, state)
    assert fair.goal is None and fair.state is None and fair.domain == "retail"
    scripted = view_for(ScriptedAgent(), "retail", history, rng, goal, state)
    assert scripted.goal is goal and scripted.state is state
    with pytest.raises(ValueError, match="needs the goal"):
        ScriptedAgent().respond([AgentView("retail", history, rng)])


@pytest.fixture
def pair_view(customer_support, template):
    from personaevo.simulator import GoalState

    ((_, goal),) = make_pairs(customer_support, template, 1)
    history = [Turn(role="agent", text="Hello"), Turn(role="user", text="I want a refund.")]
    return goal, GoalState.initial(goal), history, np.random.default_rng(0)


def test_llm_agent_on_the_tiny_model(tiny_model_dir, customer_support, template):
    agent = open_agent(f"llm:{tiny_model_dir}")
    assert isinstance(agent, LLMAgent) and not agent.reads_goal
    records = simulate(
        TemplateSimulator(), agent, RuleJudge(), make_pairs(customer_support, template, 2), 2, 2
    )
    replies = [t.text for r in records for t in r.turns[1:] if t.role == "agent"]
    assert replies and all(reply.strip() for reply in replies)
    assert all(r.agent == f"llm:{tiny_model_dir}" for r in records)


# --- intervals resampled by persona ----------------------------------------------------


def test_persona_bootstrap_does_not_count_duplicated_conversations_as_evidence():
    values = list(np.random.default_rng(0).normal(0.5, 0.2, 12))
    personas = [f"p{i}" for i in range(12)]
    copies = [v for v in values for _ in range(6)]  # every persona played 6 times, same value
    repeated = [p for p in personas for _ in range(6)]
    once = bootstrap(values, np.random.default_rng(1), personas)
    naive = bootstrap(copies, np.random.default_rng(1))
    by_persona = bootstrap(copies, np.random.default_rng(1), repeated)
    width = lambda i: i.high - i.low  # noqa: E731
    assert naive.mean == pytest.approx(by_persona.mean)
    assert width(by_persona) > 1.8 * width(naive)  # sqrt(6) wider in expectation
    assert width(by_persona) == pytest.approx(width(once), rel=0.25)
    diff = paired_difference(copies, [c + 0.1 for c in copies], np.random.default_rng(1), repeated)
    assert diff.mean == pytest.approx(0.1) and diff.n == len(copies)
    with pytest.raises(ValueError, match="group labels"):
        bootstrap([1.0, 2.0], np.random.default_rng(0), ["a"])


def test_evaluation_intervals_resample_personas(customer_support, template):
    from personaevo.simulator import evaluate_simulators

    pairs = make_pairs(customer_support, template, 2)
    comparison, _ = evaluate_simulators(
        [("t", scripted_user())], pairs, ScriptedAgent(), RuleJudge(), 6, 3, qa_questions=0
    )
    assert comparison.models[0].personas == ["p0", "p1"] * 3


# --- held-out judge --------------------------------------------------------------------


def test_heldout_judge_must_not_be_the_policy_model(tiny_model_dir, tmp_path):
    trained = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, trained)  # a model trained from the tiny one
    with pytest.raises(InputError, match="held-out judge must be a different model"):
        check_heldout_judge(str(tiny_model_dir), [str(trained)])
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 7}))
    check_heldout_judge(str(other), [str(trained)])  # another network: accepted
    check_heldout_judge("rules", [str(trained)])


def test_cli_refuses_a_heldout_judge_of_the_policy_model(tiny_model_dir, tmp_path, capsys):
    from personaevo.cli import main

    personas = tmp_path / "p.jsonl"
    write_personas(personas, [{"id": "p0", "traits": RETAIL}])
    model = str(tiny_model_dir)
    argv = ["eval-simulator", "--model", model, "--personas", str(personas)]
    assert main([*argv, "--heldout-judge", model]) == 2
    assert "held-out judge must be a different model" in capsys.readouterr().err


def test_retrack_with_the_rollout_judge_gives_the_rollout_alignment(customer_support, template):
    pairs = make_pairs(customer_support, template, 3)
    records = simulate(TemplateSimulator(), ScriptedAgent(0.3), RuleJudge(), pairs, 6, 5)
    alignment, completion, counts = retrack(records, RuleJudge())
    assert alignment == [r.alignment for r in records]
    assert completion == [float(r.state_at(r.turns[-1].statuses).tasks_complete()) for r in records]
    assert counts.judgements > 0 and counts.unreadable == 0


def yes_judge_reply(text: str) -> str:
    return "yes" if "contradict" in text else "no"


def test_evaluate_independently_side_by_side(customer_support, template):
    from personaevo.simulator import LLMJudge

    pairs = make_pairs(customer_support, template, 2)
    agent = LLMAgent(ScriptedLLM(lambda _: "Could you tell me more?"))
    heldout = LLMJudge(ScriptedLLM(yes_judge_reply, name="contrarian"))
    report, transcripts = evaluate_independently(
        [("a", scripted_user("a")), ("b", scripted_user("b"))],
        pairs,
        [ScriptedAgent(), agent],
        RuleJudge(),
        heldout_judge=heldout,
        conversations=4,
        max_turns=3,
        qa_questions=0,
    )
    assert [c.agent for c in report.comparisons] == ["scripted", agent.name]
    assert list(transcripts) == ["scripted", agent.name]
    assert [(h.agent, h.model) for h in report.heldout] == [
        ("scripted", "a"), ("scripted", "b"), (agent.name, "a"), (agent.name, "b"),
    ]  # fmt: skip
    for scores in report.heldout:
        assert set(scores.metrics) == {*JUDGED, "goal_alignment", "task_completion"}
        # this judge calls every line a contradiction: the rule judge found none
        assert scores.metrics["prompt_to_line"].mean == 0.0
        assert scores.judgements["prompt_to_line"].judgements > 0
    scripted = report.comparisons[0].models[0]
    assert scripted.metrics["prompt_to_line"].mean == 1.0
    fair = transcripts[agent.name]["a"]
    replies = {t.text for r in fair for t in r.turns[1:] if t.role == "agent"}
    assert replies == {"Could you tell me more?"}  # the same users, the other agent
    assert report.trait_fidelity == []  # no space given
    assert [s.name for s in report.behaviour.sets] == ["a", "b"]


# --- behavioural fingerprints ----------------------------------------------------------


def test_fingerprint_follows_its_definitions():
    lines = ["Please, can you help? My order id is #W1.", f"No, that is WRONG! {STOP}"]
    found = fingerprint([line.replace(STOP, "") for line in lines], True)
    x = dict(zip(FEATURES, found, strict=True))
    words = 9 + 4
    assert x["words_per_turn"] == pytest.approx(words / 2 / 40)
    assert x["front_loading"] == pytest.approx(9 / words)
    assert x["question_rate"] == 0.5 and x["exclamation_rate"] == 0.5
    assert x["politeness_rate"] == 0.5 and x["pushback_rate"] == 0.5
    assert x["disclosure_rate"] == 0.5 and x["ended_by_user"] == 1.0
    assert x["shouting_rate"] == pytest.approx(min(1, 10 * 1 / words))
    assert fingerprint(["", "..."]) is None
    assert all(0 <= v <= 1 for v in x.values())


def _record(pid: str, lines: list[str], profile=None, goal=None) -> ConversationRecord:
    turns = [Turn(role="agent", text="Hello")]
    for line in lines:
        turns += [Turn(role="user", text=line), Turn(role="agent", text="Okay.")]
    return ConversationRecord(
        id=f"c-{pid}", seed=0, simulator="s", agent="a", judge="rules", profile=profile,
        goal=goal, turns=turns, stop_reason="turn_budget", alignment=0.0, progress=0.0,
    )  # fmt: skip


def test_diverse_users_cover_more_of_the_behaviour_space(customer_support, template):
    ((profile, goal),) = make_pairs(customer_support, template, 1)
    same = [_record(f"s{i}", ["I want a refund."] * 3, profile, goal) for i in range(12)]
    styles = [
        ["Refund.", "Now."],
        ["Could you please help me? Which order is it?", "Thanks so much, I appreciate it!"],
        ["This is ridiculous, NO, that is WRONG!", "I am so angry and fed up."],
        ["Maybe I think perhaps it was the blue one, not sure.", "Probably, I guess."],
        ["My name is Ann and my order id is #W2, I live in Lyon and I am 40 years old, "
         "and I bought a lamp that arrived broken last week, so I would like a refund."],
        ["What do you mean? Explain it please?", "How so? Clarify?"],
    ]  # fmt: skip
    diverse = [_record(f"d{i}", styles[i % 6], profile, goal) for i in range(12)]
    found = compare_behaviour({"same": same, "diverse": diverse}, n_probes=2000)
    same_m, diverse_m = (s.metrics for s in found.sets)
    assert diverse_m["mc_coverage"] > same_m["mc_coverage"]
    assert diverse_m["mean_pairwise_distance"] > same_m["mean_pairwise_distance"] == 0.0
    assert diverse_m["tway_coverage.2"] > same_m["tway_coverage.2"]
    assert set(found.chamfer) == {"same vs diverse", "diverse vs same"}


# --- trait fidelity --------------------------------------------------------------------

SHORT = ["Refund.", "Order broken.", "Money back.", "Fix it."]
LONG = [
    "Well, let me tell you the whole story of how this lamp arrived and what happened next",
    "I would really like to explain everything in detail so that you understand my situation",
    "There is quite a lot to say about this order, the delivery and the packaging as well",
    "So as I was saying before, the box came late and then the lamp inside was broken too",
]
LEVELS = ["terse", "moderate", "rambling"]  # bands low, mid, high of verbosity


def verbosity_records(space, template, n: int, start: int = 0):
    """Personas whose verbosity shows in their lines: terse users say SHORT lines,
    rambling ones LONG lines, moderate ones a mix; their tech literacy does not show."""
    rng = np.random.default_rng(start)
    records = []
    for i in range(start, start + n):
        level = LEVELS[i % 3]
        literacy = ["none", "medium", "expert"][rng.integers(0, 3)]
        traits = {**RETAIL, "verbosity": level, "tech_literacy": literacy}
        profile = profile_from_persona(Persona(id=f"v{i}", traits=traits), space, seed=i)
        goal = template.compose(profile, seed=i)
        for c in range(2):
            pick = {"terse": SHORT, "rambling": LONG, "moderate": [SHORT[c], LONG[c]]}[level]
            lines = [pick[int(k)] for k in rng.integers(0, len(pick), 3)]
            record = _record(f"v{i}", lines, profile, goal)
            records.append(record.model_copy(update={"id": f"c{c}-v{i}"}))
    return records


def test_trait_bands():
    assert [band(u) for u in (0.0, 0.33, 0.34, 0.66, 0.67, 1.0)] == [
        "low", "low", "mid", "mid", "high", "high",
    ]  # fmt: skip


def test_trait_fidelity_finds_the_trait_that_shows_and_not_the_one_that_does_not(
    customer_support, template
):
    records = verbosity_records(customer_support, template, 18)
    assert trait_bands(records[0].profile, customer_support)["verbosity"] == "low"
    found = evaluate_trait_fidelity(records, customer_support, folds=3, seed=0)
    by_axis = {a.axis: a for a in found.axes}
    assert found.personas == 18 and found.folds == 3
    assert "domain" in found.skipped_axes  # categorical
    shows = by_axis["verbosity"]
    assert shows.chance == pytest.approx(1 / 3) and shows.low > shows.chance
    assert shows.balanced_accuracy > 0.8
    hidden = by_axis["tech_literacy"]
    assert hidden.balanced_accuracy < shows.balanced_accuracy
    assert by_axis["patience"].note.startswith("one band")  # every persona has low patience


def test_trait_classifier_on_held_out_personas_and_the_reward(customer_support, template):
    train = verbosity_records(customer_support, template, 12)
    test = verbosity_records(customer_support, template, 9, start=100)
    classifier = fit_trait_classifier(train, customer_support)
    scored = {a.axis: a for a in classifier.score(test).axes}
    assert scored["verbosity"].balanced_accuracy > scored["verbosity"].chance
    profiles = [r.profile for r in test]
    scorer = TraitScorer(classifier, profiles)
    (fn,) = reward_functions(["trait_fidelity"], bound={"trait_fidelity": {"scorer": scorer}})
    terse = next(p.persona_id for p in profiles if p.traits["verbosity"] == "terse")
    rambling = next(p.persona_id for p in profiles if p.traits["verbosity"] == "rambling")
    rows = dict(persona_id=[terse, terse, rambling], earlier=[[], [], []])
    got = fn([[]] * 3, ["Refund.", LONG[0], LONG[1]], **rows)
    assert got[0] > got[1] and got[2] > got[1]  # the line that fits the persona scores higher
    assert all(0 <= g <= 1 for g in got)
    assert fn([[]], ["Refund."], persona_id=["unknown"], earlier=[[]]) == [None]
    with pytest.raises(ValueError, match="needs a scorer"):
        reward_functions(["trait_fidelity"])[0]([[]], ["x"], persona_id=["p"])


def test_trait_classifier_round_trips(customer_support, template, tmp_path):
    from personaevo.simulator.trait_fidelity import TraitClassifier

    train = verbosity_records(customer_support, template, 9)
    classifier = fit_trait_classifier(train, customer_support)
    classifier.save(tmp_path / "traits.pkl")
    again = TraitClassifier.load(tmp_path / "traits.pkl")
    samples = [["Refund."], [LONG[0]]]
    assert again.probabilities(samples) == classifier.probabilities(samples)
    with pytest.raises(InputError, match="no such trait classifier"):
        TraitClassifier.load(tmp_path / "missing.pkl")


# --- the command line ------------------------------------------------------------------


def test_eval_simulator_cli_two_agents_heldout_judge_and_trait_fidelity(
    monkeypatch, tmp_path, capsys
):
    from personaevo.cli import main
    from personaevo.simulator import models

    lines = iter(np.random.default_rng(0).choice([*SHORT, *LONG], 1000))

    def user(_: str) -> str:
        return str(next(lines))

    def fake_model(spec: str):
        if spec == "judge":
            return ScriptedLLM(yes_judge_reply, name="judge")
        if spec == "agentlm":
            return ScriptedLLM(lambda _: "What do you need?", name="agentlm")
        return RecordingLLM(user)

    monkeypatch.setattr(models, "check_model_spec", lambda spec: None)
    monkeypatch.setattr(models, "model_family", lambda spec: spec)
    monkeypatch.setattr(models, "open_model", fake_model)
    personas = tmp_path / "p.jsonl"
    write_personas(
        personas,
        [{"id": f"p{i}", "traits": {**RETAIL, "verbosity": LEVELS[i % 3]}} for i in range(6)],
    )
    report = tmp_path / "eval.json"
    argv = ["eval-simulator", "--model", "sim", "--personas", str(personas)]
    argv += ["--space", "customer_support", "--agent", "scripted,llm:agentlm"]
    argv += ["--heldout-judge", "judge", "--conversations", "6", "--turns", "2"]
    argv += ["--qa-questions", "0", "--json", str(report)]
    saved = tmp_path / "traits.pkl"
    assert main([*argv, "--save-trait-classifier", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "agent scripted" in out and "agent llm:agentlm" in out
    assert "sim / scripted" in out and "sim / llm:agentlm" in out  # side by side
    assert "held-out judge llm:judge" in out and "trait fidelity" in out
    assert "behavioural diversity" in out
    written = json.loads(report.read_text())
    assert written["models"][0]["model"] == "sim"  # the first agent's table, as before
    assert len(written["comparisons"]) == 2 and len(written["heldout"]) == 2
    (fidelity,) = written["trait_fidelity"]
    axes = {a["axis"]: a for a in fidelity["axes"]}
    assert axes["verbosity"]["balanced_accuracy"] is not None
    assert written["behaviour"]["sets"][0]["name"] == "sim"
    assert saved.is_file() and "trait classifier fitted" in out

    again = [*argv, "--agent", "scripted", "--trait-classifier", str(saved)]
    assert main([*again, "--no-trait-fidelity"]) == 0
    out = capsys.readouterr().out
    assert "read by the classifier" in out and "trait fidelity (agent" not in out
    written = json.loads(report.read_text())
    assert written["trait_fidelity"] == [] and len(written["trait_transfer"]) == 1


def test_training_with_the_trait_fidelity_reward_needs_its_classifier(customer_support):
    from personaevo.simulator import TrainConfig
    from personaevo.simulator.trait_fidelity import reward_binding

    config = TrainConfig(model="tiny", rewards=["prompt_to_line", "trait_fidelity"])
    with pytest.raises(InputError, match="needs trait_classifier"):
        reward_binding(config.rewards, config.trait_classifier, [])
    assert reward_binding(["prompt_to_line"], None, []) == {}


def test_trait_fidelity_reward_is_not_a_default_reward():
    from personaevo.simulator.rewards import OPTIONAL_REWARDS, REWARDS

    assert "trait_fidelity" in OPTIONAL_REWARDS and "trait_fidelity" not in REWARDS
