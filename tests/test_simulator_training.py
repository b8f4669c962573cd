"""User simulators on the tiny model: the CLI commands, a GRPO run killed midway and resumed,
a LoRA step, and bad input caught before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaevo.cli import main
from personaevo.llm.corpus import sample_persona
from personaevo.personas import write_personas
from personaevo.simulator import REWARDS, TRAJECTORY_REWARDS, TrainConfig, train_simulator
from personaevo.spaces import load_space


class KilledError(Exception):
    """Raised by a callback to stand in for a kill midway through training."""


@pytest.fixture(scope="module")
def persona_file(tmp_path_factory) -> Path:
    import random

    space, rng = load_space("customer_support"), random.Random(0)
    path = tmp_path_factory.mktemp("personas") / "personas.jsonl"
    write_personas(path, [{"id": f"p{i}", "traits": sample_persona(space, rng)} for i in range(6)])
    return path


def small_config(model: Path, personas: Path, out: Path, **changes) -> TrainConfig:
    options = dict(
        model=str(model),
        personas=str(personas),
        space="customer_support",
        out=str(out),
        steps=4,
        group_size=2,
        prompts_per_step=2,
        refresh_every=2,
        rollout_conversations=2,
        max_turns=2,
        pool_size=8,
        max_completion_length=12,
        learning_rate=1e-3,
        held_out=0.34,
        seed=0,
    )
    return TrainConfig(**{**options, **changes})


@pytest.mark.parametrize("unit", ["conversation", "turn"])
def test_grpo_run_killed_midway_resumes_from_its_checkpoint(
    tiny_model_dir, persona_file, tmp_path, unit
):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class KillAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KilledError

    out = tmp_path / "run"
    # (conversation unit: no probe rows, so that every step has conversations to log)
    share = 0.0 if unit == "conversation" else 0.25
    config = small_config(tiny_model_dir, persona_file, out, unit=unit, qa_prompt_share=share)
    with pytest.raises(KilledError):
        train_simulator(config, log=lambda _: None, callbacks=[KillAtStep3()])
    assert (out / "checkpoint-2").is_dir() and not (out / "final").exists()
    with pytest.raises(Exception, match="already holds a training run"):
        train_simulator(config, log=lambda _: None)

    result = train_simulator(TrainConfig.load(out), resume=True, log=lambda _: None)
    assert result.resumed_from.endswith("checkpoint-2") and result.steps == 4
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    logged_steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert logged_steps == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 resumed
    summary = json.loads((out / "summary.json").read_text())
    # every reward logged under its own name (the conversation unit adds its trajectory ones)
    expected = set(REWARDS) | (set(TRAJECTORY_REWARDS) if unit == "conversation" else set())
    assert set(summary["rewards"]) == expected and TrainConfig.load(out).unit == unit
    assert [step for step, _ in summary["rewards"]["prompt_to_line"]] == [1, 2, 3, 4]
    # the resumed run rebuilt its pool once, at step 2 (refresh 2 // K), with restored weights
    assert [(r["refresh"], r["step"]) for r in summary["refreshes"]] == [(1, 2)]

    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    changed = [name for name in after if not after[name].equal(before[name])]
    assert changed, "training did not change any weight"
    held_out = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert len(held_out) == 2 and all("profile" in r for r in held_out)
    saved = sorted(p.name for p in (out / "rollouts").glob("refresh-*.jsonl"))
    assert saved == ["refresh-0000.jsonl", "refresh-0001.jsonl"]  # 1 rewritten on resume


@pytest.mark.parametrize("unit", ["conversation", "turn"])
def test_lora_training_writes_an_adapter(tiny_model_dir, persona_file, tmp_path, unit):
    config = small_config(
        tiny_model_dir,
        persona_file,
        tmp_path / "lora",
        unit=unit,
        qa_prompt_share=0.0,
        steps=1,
        lora=True,
        lora_r=4,
        rewards=["prompt_to_line", "intent_adherence"],
        reward_weights={"intent_adherence": 2.0},
    )
    from transformers import TrainerCallback

    logged: list[dict] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs or {}))

    result = train_simulator(config, log=lambda _: None, callbacks=[Record()])
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    assert (Path(result.final_model) / "config.json").is_file()  # merged: loads anywhere
    used = {"prompt_to_line", "intent_adherence"}
    assert set(result.last_rewards) == (used if unit == "turn" else used | set(TRAJECTORY_REWARDS))
    # the rule judge's verdicts are counted per reward and step, none unreadable
    step = next(entry for entry in logged if "reward" in entry)
    # (2 prompts x 2 completions: turn rows, or conversations of up to max_turns lines)
    per_row = 1 if unit == "turn" else config.max_turns
    assert 0 < step["judgements/prompt_to_line"] <= 2 * 2 * per_row
    assert step["unreadable/prompt_to_line"] == 0
    counts = result.judgements["prompt_to_line"]
    assert counts.judgements == step["judgements/prompt_to_line"] and counts.unreadable == 0
    summary = json.loads((tmp_path / "lora" / "summary.json").read_text())
    assert summary["judgements"]["intent_adherence"]["unreadable"] == 0


def test_simulate_and_eval_cli_on_the_tiny_model(tiny_model_dir, persona_file, tmp_path, capsys):
    rollouts = tmp_path / "r.jsonl"
    base = ["--personas", str(persona_file), "--space", "customer_support"]
    small = ["--conversations", "2", "--turns", "2"]
    code = main(["simulate", "--model", str(tiny_model_dir), *base, *small, "--out", str(rollouts)])
    assert code == 0
    records = [json.loads(line) for line in rollouts.read_text().splitlines()]
    assert len(records) == 2 and records[0]["turns"][1]["intent"] == "request"

    report = tmp_path / "eval.json"
    model = str(tiny_model_dir)
    small = ["--conversations", "3", "--turns", "2", "--json", str(report)]
    code = main(["eval-simulator", "--model", model, "--model", model, *base, *small])
    assert code == 0
    table = capsys.readouterr().out
    assert "prompt_to_line" in table and "qa_consistency" in table and "unreadable" in table
    comparison = json.loads(report.read_text())
    assert len(comparison["models"]) == 2
    counts = comparison["models"][0]["judgements"]
    assert (
        counts["prompt_to_line"]["judgements"] > 0 and counts["prompt_to_line"]["unreadable"] == 0
    )
    # the same model with the same seeds plays the same conversations: no difference
    for name, diff in comparison["differences"].items():
        assert diff["mean"] in (None, 0.0), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--model": "/no/such/model"}, "no such model folder"),
        ({"--intents": "request,haggle"}, "unknown intent 'haggle'"),
        ({"--personas": "BAD"}, "record 1 (id x): patience"),
        ({"--curriculum": "easiest-first"}, "unknown curriculum"),
    ],
)
def test_bad_input_stops_before_training(
    change, message, tmp_path, capsys, tiny_model_dir, persona_file
):
    bad = tmp_path / "bad.jsonl"
    traits = json.loads(persona_file.read_text().splitlines()[0])["traits"]
    bad.write_text(json.dumps({"id": "x", "traits": {**traits, "patience": "saintly"}}) + "\n")
    args = {
        "--model": str(tiny_model_dir),
        "--personas": str(bad) if change.get("--personas") == "BAD" else str(tmp_path / "p.jsonl"),
        "--space": "customer_support",
        "--out": str(tmp_path / "out"),
    }
    args.update({k: v for k, v in change.items() if k != "--personas"})
    argv = ["train-simulator"] + [x for pair in args.items() for x in pair]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoint-1").exists()
