"""The simulator's data: winners -> trainer through the export (failing programs reported),
the rank-based and measured curriculum, and the held-out split read back by evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _personas import RETAIL
from _small_run import shared_run

from personaevo.cli import main
from personaevo.errors import InputError
from personaevo.export import export_personas, read_records
from personaevo.llm import SamplingParams, ScriptedLLM
from personaevo.personas import Persona
from personaevo.simulator import (
    DEFAULT_HELD_OUT,
    STOP,
    GoalTemplate,
    IntentPlanner,
    RuleJudge,
    ScriptedAgent,
    TrainConfig,
    held_out_pairs,
    personas_from_run,
    prior_difficulty,
    profile_from_persona,
)
from personaevo.simulator.curriculum import Curriculum, goal_failed
from personaevo.simulator.goal_files import builtin_goal_path
from personaevo.simulator.heldout import write_held_out
from personaevo.simulator.pool import PromptPool
from personaevo.simulator.rollout import read_records as read_rollouts

BROKEN = """
def generate(space, n, rng, llm=None):
    raise ValueError("this program always fails")
"""

TOO_MANY = """
def generate(space, n, rng, llm=None):
    traits = {a.name: a.values[0] if a.kind != "continuous" else a.low for a in space.axes}
    return [{"id": f"x{i}", "traits": dict(traits)} for i in range(n + 3)]
"""


@pytest.fixture(scope="module")
def run_with_failures(tmp_path_factory) -> Path:
    """The session's small run with two failing programs added to its front."""
    copy = tmp_path_factory.mktemp("winners") / "run"
    shutil.copytree(shared_run(tmp_path_factory), copy, ignore=shutil.ignore_patterns("exports*"))
    (copy / "front" / "broken.py").write_text(BROKEN)
    (copy / "front" / "too_many.py").write_text(TOO_MANY)
    return copy


@pytest.fixture(scope="module")
def template() -> GoalTemplate:
    return GoalTemplate.load(builtin_goal_path("template"))


# --- winners -> trainer ------------------------------------------------------------------


def test_run_personas_are_the_export_and_failing_programs_are_reported(run_with_failures, tmp_path):
    lines: list[str] = []
    got = personas_from_run(run_with_failures, tmp_path / "a", n_per_program=6, log=lines.append)
    programs = len(list((run_with_failures / "front").glob("*.py")))
    assert len(got.personas) == got.export.exported <= 6 * programs
    # the same code as `personaevo export`: same personas, same order, rarity included
    direct = export_personas(
        run_with_failures, n=6 * programs, out=tmp_path / "direct.jsonl", n_probes=10_000
    )
    expected = read_records(tmp_path / "direct.jsonl")
    assert [p.traits for p in got.personas] == [r["traits"] for r in expected]
    assert direct.exported == got.export.exported
    assert all(isinstance(getattr(p, "rarity", None), float) for p in got.personas)
    # failing programs named, with why; nothing dropped silently
    by_name = {line.split(":")[0]: line for line in got.problems}
    assert "failed" in by_name["broken"] and "exception" in by_name["broken"]
    assert "this program always fails" in by_name["broken"]
    assert "wrong_count" in by_name["too_many"]  # the count rule: more than n fails
    failing = {y.name for y in got.export.programs if y.failures or y.invalid or not y.pooled}
    assert set(by_name) == failing  # and only those: left out by the selection is no failure
    assert any("front programs of" in line and "failed" in line for line in lines)
    assert all(any(line.strip() == p for line in lines) for p in got.problems)
    # the run directory is left as it was: the trainer's export is not indexed there
    assert (
        not (run_with_failures / "exports.jsonl").exists()
        or "a/personas" not in (run_with_failures / "exports.jsonl").read_text()
    )
    # a resumed training run reuses its export
    again = personas_from_run(run_with_failures, tmp_path / "a", n_per_program=99, reuse=True)
    assert [p.id for p in again.personas] == [p.id for p in got.personas]


def test_a_run_whose_programs_all_fail_is_an_input_error(run_with_failures, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_with_failures, bad)
    for path in (bad / "front").glob("*.py"):
        if path.stem not in ("broken", "too_many"):
            path.unlink()
    with pytest.raises(InputError, match="gave no valid persona"):
        personas_from_run(bad, tmp_path / "out", n_per_program=4)


# --- curriculum ------------------------------------------------------------------------


def _saturated_profiles(n: int = 60, saturated: int = 47) -> list:
    """``saturated`` of ``n`` personas at rarity >= 0.99 (30 of them exactly 1.0), as in a
    coverage-optimised export; varied traits."""
    rng = np.random.default_rng(5)
    levels = {
        "patience": ["low", "medium", "high"],
        "verbosity": ["terse", "normal", "verbose"],
        "emotional_state": ["calm", "frustrated", "angry"],
    }
    profiles = []
    for i in range(n):
        traits = {k: str(rng.choice(v)) for k, v in levels.items()}
        if i < 30:
            rarity = 1.0
        elif i < saturated:
            rarity = 0.99 + 0.0005 * (i - 30)
        else:
            rarity = float(rng.uniform(0.1, 0.9))
        persona = Persona.model_validate({"id": f"p{i}", "traits": traits, "rarity": rarity})
        profiles.append(profile_from_persona(persona))
    return profiles


def test_saturated_rarity_still_gives_spread_difficulties():
    profiles = _saturated_profiles()
    prior = prior_difficulty(profiles, None)
    curriculum = Curriculum(prior, "moderate-first", seed=0)
    q = curriculum.quantiles
    assert len(set(np.round(q, 9))) == 60  # every persona its own difficulty rank
    top = q[:47]
    assert top.max() - top.min() > 0.4  # the saturated ones spread, not one value
    w = curriculum.weights(0.0)[:47]
    assert w.max() / w.min() > 10  # so the schedule tells them apart
    # by rarity alone the 30 at exactly 1.0 tie, and only the seed would order them; the
    # prior orders them by their unusualness within the population first
    assert len(set(np.round(prior[:30], 9))) > 5
    # the population's own unusualness ranks: rarer traits in the population, harder
    assert np.mean(q[47:]) < np.mean(top)


def test_measured_failures_move_difficulty_as_documented():
    curriculum = Curriculum(list(np.linspace(0, 1, 5)), "hardest-first", seed=0)
    assert int(np.argmax(curriculum.weights(0.0))) == 4
    for _ in range(20):
        curriculum.record(0, True)  # the easiest by prior fails every rollout
        curriculum.record(4, False)  # the hardest by prior never fails
    d = curriculum.difficulty
    assert d[0] == pytest.approx((4 * 0.0 + 20) / (4 + 20))
    assert d[4] == pytest.approx((4 * 1.0 + 0) / (4 + 20))
    assert d[2] == pytest.approx(0.5)  # never played: its prior quantile
    assert int(np.argmax(curriculum.weights(0.0))) == 0
    assert curriculum.quantiles[0] == 1.0 and curriculum.quantiles[4] == 0.0
    with pytest.raises(ValueError, match="prior_rollouts"):
        Curriculum([0.1, 0.2], prior_rollouts=0)


def _user(text: str) -> str:
    intent = text.rsplit("Intent: ", 1)[1].split()[0]
    return {"end": f"Thanks, bye. {STOP}", "request": "I want a refund for it, please."}.get(
        intent, "Here are the details."
    )


def _pool(template, tmp_path: Path, curriculum: Curriculum) -> PromptPool:
    profiles = [
        profile_from_persona(Persona(id=f"u{i}", traits=dict(RETAIL)), None, 0) for i in range(3)
    ]
    return PromptPool(
        profiles=profiles,
        goals=[template.compose(p, 0) for p in profiles],
        curriculum=curriculum,
        agent=ScriptedAgent(refusal=0.0),
        judge=RuleJudge(),
        planner=IntentPlanner(),
        params=SamplingParams(max_tokens=16),
        size=8,
        conversations=6,
        max_turns=3,
        qa_questions=0,
        total_steps=10,
        seed=0,
        save_dir=tmp_path,
    )


def test_rollouts_feed_the_measured_difficulty_and_a_resume_recounts_them(template, tmp_path):
    llm = ScriptedLLM(_user, name="user")
    curriculum = Curriculum([0.2, 0.5, 0.8], "moderate-first")
    pool = _pool(template, tmp_path, curriculum)
    first = pool.refresh(llm, step=0, refresh=0)
    pool.refresh(llm, step=5, refresh=1)
    assert curriculum.rollouts.sum() == 12
    saved = read_rollouts(tmp_path / "refresh-0000.jsonl")
    assert first.failed == pytest.approx(np.mean([goal_failed(r) for r in saved]))
    resumed = Curriculum([0.2, 0.5, 0.8], "moderate-first")
    pool2 = _pool(template, tmp_path, resumed)
    pool2.refresh(llm, step=5, refresh=1)  # a resumed run: counts refresh 0 from its file
    assert resumed.rollouts.sum() == 12
    assert np.array_equal(resumed.failures, curriculum.failures)


# --- held-out split -----------------------------------------------------------------


def test_default_held_out_share_is_a_quarter_everywhere(capsys):
    assert TrainConfig(model="tiny").held_out == DEFAULT_HELD_OUT == 0.25
    with pytest.raises(SystemExit):
        main(["train-simulator", "--help"])
    assert "default 0.25, a quarter" in " ".join(capsys.readouterr().out.split())
    root = Path(__file__).parents[1]
    assert "held-out 0.2`" not in (root / "README.md").read_text()
    assert "`--held-out 0.25`" in (root / "docs" / "simulator-data.md").read_text()


def test_held_out_pairs_keep_their_goals_whatever_the_goal_source(template, tmp_path):
    profiles = [
        profile_from_persona(Persona(id=f"h{i}", traits=dict(RETAIL)), None, 3) for i in range(3)
    ]
    pairs = [(p, template.compose(p, 3)) for p in profiles]
    (tmp_path / "train_config.json").write_text(json.dumps({"model": "tiny", "seed": 3}))
    write_held_out(tmp_path, pairs)
    back = held_out_pairs(tmp_path)
    assert [(p.persona_id, g) for p, g in back] == [(p.persona_id, g) for p, g in pairs]
    assert [p.facts for p, _ in back] == [p.facts for p in profiles]
    # an older run without heldout_goals.json: goals composed again, ids must match
    (tmp_path / "heldout_goals.json").unlink()
    assert [g.id for _, g in held_out_pairs(tmp_path / "heldout.jsonl")] == [g.id for _, g in pairs]
    lines = (tmp_path / "heldout.jsonl").read_text().splitlines()
    wrong = json.loads(lines[1]) | {"goal": "no-such-goal"}
    lines[1] = json.dumps(wrong)
    (tmp_path / "heldout.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"record h1: goal.*no-such-goal"):
        held_out_pairs(tmp_path)
    with pytest.raises(InputError, match="not a training run"):
        held_out_pairs(tmp_path / "nowhere")


def test_eval_of_a_training_run_refuses_other_goals(tmp_path, capsys):
    (tmp_path / "train_config.json").write_text(json.dumps({"model": "tiny"}))
    (tmp_path / "heldout.jsonl").write_text("")
    code = main(["eval-simulator", "--model", "tiny", "--training-run", str(tmp_path),
                 "--goals", "customer_support"])  # fmt: skip
    assert code == 2
    assert "its held-out personas come with the goals" in capsys.readouterr().err


# --- run -> export -> train -> eval, end to end on the tiny model --------------------


def test_run_to_export_to_train_to_eval(tiny_model_dir, run_with_failures, tmp_path, capsys):
    out = tmp_path / "sim"
    train = ["train-simulator", "--model", str(tiny_model_dir), "--run", str(run_with_failures),
             "--out", str(out), "--steps", "2", "--group-size", "2", "--prompts-per-step", "2",
             "--refresh-every", "2", "--rollout-conversations", "2", "--turns", "2",
             "--max-tokens", "8", "--curriculum", "moderate-first",
             "--n-per-program", "8"]  # fmt: skip
    assert main(train) == 0
    printed = capsys.readouterr().out
    assert "front programs failed" in printed and "broken" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert any(line.startswith("broken:") for line in summary["programs"])
    assert summary["refreshes"][0]["failed"] >= 0.0
    exported = read_records(out / "personas.jsonl")  # the export, beside the model
    assert (out / "personas.jsonl.card.md").is_file()
    held = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert 0 < len(held) == round(DEFAULT_HELD_OUT * len(exported))
    assert {r["id"] for r in held} <= {r["id"] for r in exported}

    report, transcripts = tmp_path / "eval.json", tmp_path / "transcripts"
    evaluate = ["eval-simulator", "--model", str(tiny_model_dir), "--model", str(out / "final"),
                "--training-run", str(out), "--conversations", str(len(held)), "--turns", "2",
                "--max-tokens", "8", "--json", str(report),
                "--transcripts", str(transcripts)]  # fmt: skip
    assert main(evaluate) == 0
    assert f"{len(held)} held-out personas of the training run" in capsys.readouterr().out
    played = [json.loads(line) for line in (transcripts / "model1.jsonl").read_text().splitlines()]
    wanted = {r["id"]: r["goal"] for r in held}
    assert {r["profile"]["persona_id"]: r["goal"]["id"] for r in played} == wanted
    comparison = json.loads(report.read_text())
    assert [m["conversations"] for m in comparison["models"]] == [len(held)] * 2
