"""The labelled judge set: its labels are what they say, and the measures read them."""

from __future__ import annotations

import pytest

from personaevo.llm.base import ScriptedLLM
from personaevo.simulator.judge_bench import QUESTIONS, build_judge_set, measure_judge
from personaevo.simulator.judges import LLMJudge, RuleJudge


@pytest.fixture(scope="module")
def lines():
    return build_judge_set(seed=0, personas=12)


def test_the_set_is_seeded_and_balanced(lines):
    assert len(lines) == 12 * 8
    assert [x.line for x in build_judge_set(seed=0, personas=12)] == [x.line for x in lines]
    assert [x.line for x in build_judge_set(seed=1, personas=12)] != [x.line for x in lines]
    counts = {}
    for x in lines:
        counts[(x.kind, x.family)] = counts.get((x.kind, x.family), 0) + 1
    assert set(counts.values()) == {12} and len(counts) == 8


def test_rule_judge_is_exact_on_its_patterns_and_blind_to_paraphrases(lines):
    """The rule judge was written for the pattern family: perfect there. The paraphrase
    family says the same in other words: it finds none of those, and that gap is what
    the set is for."""
    report = measure_judge(RuleJudge(), lines)
    for question in QUESTIONS:
        pattern = report.by_family["pattern"][question]
        paraphrase = report.by_family["paraphrase"][question]
        assert pattern.accuracy == 1.0 and pattern.recall == 1.0
        assert paraphrase.recall == 0.0 and paraphrase.false_positive == 0
        assert report.questions[question].balanced_accuracy == pytest.approx(0.75)


def test_a_judge_that_always_says_yes_or_mumbles_is_measured_as_such(lines):
    yes = measure_judge(LLMJudge(ScriptedLLM(lambda _: "Yes.", name="yes")), lines)
    for c in yes.questions.values():
        assert c.recall == 1.0 and c.precision == pytest.approx(0.25)
        assert c.balanced_accuracy == pytest.approx(0.5) and c.unreadable == 0
    mumble = measure_judge(LLMJudge(ScriptedLLM(lambda _: "hmm", name="mumble")), lines)
    for c in mumble.questions.values():
        assert c.unreadable == c.lines and c.accuracy == 0.0 and c.recall is None
