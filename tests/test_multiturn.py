"""Multi-turn GRPO (the conversation unit): trajectory rewards on a conversation whose
scores are known by hand, the rollout's token sequences and loss mask, a training step,
and seeded repeats, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_simulator_training import persona_file, small_config  # noqa: F401

from personaevo.llm import SamplingParams, ScriptedLLM
from personaevo.simulator.agents import ScriptedAgent
from personaevo.simulator.conditioning import STOP, agent_message
from personaevo.simulator.curriculum import Curriculum
from personaevo.simulator.goals import GoalItem, Instructions, UserGoal
from personaevo.simulator.judges import RuleJudge
from personaevo.simulator.multiturn import ChatTokens, ConversationPool, ConversationRollout
from personaevo.simulator.profiles import Profile
from personaevo.simulator.rollout import run_conversations
from personaevo.simulator.simulator import IntentPlanner, Simulator
from personaevo.simulator.trajectory import (
    TRAJECTORY_REWARDS,
    TrajectoryScorer,
    conversation_rewards,
)

GOAL = UserGoal(
    id="refund",
    instructions=Instructions(reason_for_call="a refund"),
    task_objectives=[
        GoalItem(
            text="get a refund",
            mention=[r"\brefund\b"],
            complete_when=[r"refund is issued"],
            agent_example="Your refund is issued.",
        )
    ],
    requirements=[
        GoalItem(
            text="give the order number",
            mention=[r"\border \d+"],
            complete_when=[r"found your order"],
            agent_example="Thank you, I found your order.",
        )
    ],
)
PROFILE = Profile(
    persona_id="ann",
    facts={"name": "Ann", "age": 45, "occupation": "teacher", "location": "Leeds"},
)


def known_conversation():
    """Three user lines against the scripted agent (no stalls): a request, the order
    number, then a false age."""
    lines = iter(["I want a refund.", "My order 123 is late.", "I am 30 years old."])
    simulator = Simulator(ScriptedLLM(lambda _: next(lines)), planner=IntentPlanner())
    session = simulator.start("c0", PROFILE, GOAL, seed=0)
    (record,) = run_conversations(simulator, ScriptedAgent(), RuleJudge(), [session], 3)
    return record


def test_trajectory_rewards_of_a_known_conversation():
    record = known_conversation()
    agent_lines = [t.text for t in record.turns if t.role == "agent"]
    # greeting; details asked (objective attempted, order missing); order found; refund issued
    assert agent_lines[2:] == ["Thank you, I found your order.", "Your refund is issued."]
    # by hand: items [profile facts, objective, requirement] end Misaligned (age 30 is not
    # 45), Complete, Complete -> alignment 2/3; every task Complete -> completion 1;
    # consistency: 3 lines vs the persona (the third fails) + 3 pairs (none conflict) = 5/6
    scorer = TrajectoryScorer(
        ["prompt_to_line"], TRAJECTORY_REWARDS, RuleJudge(), None, 0, 6, 3, {}, seed=0
    )
    funcs = conversation_rewards(scorer)
    values = {
        f.__name__: f([[]], [""], record=[record], kind=["conversation"], questions=[[]])[0]
        for f in funcs
    }
    assert values == pytest.approx(
        {
            "prompt_to_line": 2 / 3,
            "goal_alignment": 2 / 3,
            "task_completion": 1.0,
            "consistency": 5 / 6,
        }
    )
    assert funcs[-1].count.judgements == 6  # 3 prompt-to-line + 3 line-to-line verdicts
    # a probe row gets only qa_consistency, graded on its completion
    probe = funcs[0]([[]], ["A"], record=[None], kind=["probe"], questions=[[]])
    assert probe == [None]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    from personaevo.simulator.policy import PolicyLLM

    return PolicyLLM.from_pretrained(tiny_model_dir, device="cpu")


def conversation_pool(policy, probe_share: float = 0.0, seed: int = 0) -> ConversationPool:
    profiles = [PROFILE, PROFILE.model_copy(update={"persona_id": "bob"})]
    pool = ConversationPool(
        profiles=profiles,
        goals=[GOAL, GOAL],
        curriculum=Curriculum([0.0, 1.0], "uniform"),
        agent=ScriptedAgent(0.2),
        judge=RuleJudge(),
        planner=IntentPlanner(),
        params=SamplingParams(max_tokens=24, temperature=1.0),
        size=4,
        conversations=2,
        max_turns=3,
        probe_share=probe_share,
        seed=seed,
    )
    pool.refresh(policy, step=0, refresh=0)
    return pool


def rollout_of(pool, policy, seed: int = 0, group: int = 2):
    rollout = ConversationRollout(
        pool,
        pool.agent,
        pool.judge,
        policy.tokenizer,
        SamplingParams(max_tokens=24, temperature=1.0),
        group,
        seed,
    )
    starts = [r for r in pool._rows if r["kind"] == "conversation"][:2]
    prompts = [r["prompt"] for r in starts for _ in range(group)]  # TRL repeats each prompt
    return rollout.play(prompts, policy, step=3)


def test_rollout_masks_agent_tokens_out_of_the_loss(policy):
    pool = conversation_pool(policy)
    out = rollout_of(pool, policy)
    tok = policy.tokenizer
    chat = ChatTokens(tok, policy.terminators())
    assert out["logprobs"] is None and len(out["completion_ids"]) == 4
    for ids, mask, record in zip(
        out["completion_ids"], out["env_mask"], out["record"], strict=True
    ):
        assert len(ids) == len(mask)
        users = [t for t in record.turns if t.role == "user"]
        agents = [t for t in record.turns if t.role == "agent"][1 : len(users)]
        # every agent line reaches the completion only as masked tokens: exactly its
        # chat-template segment (the line and the next intent), all with mask 0
        for agent, user in zip(agents, users[1:], strict=True):
            seg = chat.user_turn(agent_message(agent.text, user.intent))
            at = [j for j in range(len(ids)) if ids[j : j + len(seg)] == seg]
            assert at and not any(mask[at[0] : at[0] + len(seg)])
        kept = [t for t, m in zip(ids, mask, strict=True) if m]
        trained = tok.decode(kept, skip_special_tokens=True)
        assert "Agent:" not in trained  # no agent token is trained
        whole = tok.decode(ids, skip_special_tokens=True)
        for user in users:  # each line comes from the completion (trained unless cut short)
            assert user.text.replace(STOP, "").strip()[:8] in whole


def test_trainer_loss_mask_excludes_agent_tokens(tiny_model_dir, persona_file, tmp_path):  # noqa: F811
    from personaevo.simulator.training import build_trainer, prepare

    config = small_config(tiny_model_dir, persona_file, tmp_path / "mask", qa_prompt_share=0.0)
    config = config.model_copy(update={"max_turns": 3})
    trainer, pool = build_trainer(config, prepare(config), tmp_path / "mask")
    from personaevo.simulator.policy import PolicyLLM

    pool.refresh(PolicyLLM(trainer.model, trainer.processing_class), 0, 0)
    rows = pool._rows[:2]
    inputs = [dict(r) for r in rows for _ in range(config.group_size)]
    batch = trainer._generate_and_score_completions(inputs)
    played = trainer.rollout_func.records
    assert len(played) == 4 and "tool_mask" in batch
    loss_mask = batch["completion_mask"] * batch["tool_mask"]
    for row, record in enumerate(played):
        agent_lines = [t.text for t in record.turns if t.role == "agent"][1:]
        n_user = sum(t.role == "user" for t in record.turns)
        ids = batch["completion_ids"][row]
        masked_text = trainer.processing_class.decode(ids[loss_mask[row] == 0])
        trained_text = trainer.processing_class.decode(ids[loss_mask[row] == 1])
        user_lines = [t.text for t in record.turns if t.role == "user"]
        for line in agent_lines[: n_user - 1]:  # agent lines inside the completion
            assert line in masked_text
            # (the tiny policy may echo the format, "Agent: ...", in its own line: those
            # are its tokens and are trained; the agent's lines themselves never are)
            if not any(line in user for user in user_lines):
                assert line not in trained_text
    assert np.isfinite(batch["advantages"].numpy()).all()


def test_seeded_rollouts_repeat(policy):
    first = rollout_of(conversation_pool(policy, probe_share=0.5), policy, seed=5)
    again = rollout_of(conversation_pool(policy, probe_share=0.5), policy, seed=5)
    other = rollout_of(conversation_pool(policy, probe_share=0.5), policy, seed=6)
    assert first["completion_ids"] == again["completion_ids"]
    assert first["env_mask"] == again["env_mask"]
    texts = [[t.text for t in r.turns] for r in first["record"] if r is not None]
    assert texts == [[t.text for t in r.turns] for r in again["record"] if r is not None]
    assert first["completion_ids"] != other["completion_ids"]


def test_a_multi_turn_step_trains_and_repeats_with_its_seed(
    tiny_model_dir,
    persona_file,  # noqa: F811
    tmp_path,
):
    from safetensors.torch import load_file

    from personaevo.simulator import train_simulator

    finals = []
    for name in ("a", "b"):
        config = small_config(tiny_model_dir, persona_file, tmp_path / name, steps=2)
        assert config.unit == "conversation"
        result = train_simulator(config, log=lambda _: None)
        finals.append(load_file(str(Path(result.final_model) / "model.safetensors")))
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert set(TRAJECTORY_REWARDS) <= set(summary["rewards"])
    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert any(not finals[0][k].equal(before[k]) for k in before), "no weight changed"
    assert all(finals[0][k].equal(finals[1][k]) for k in before), "same seed, other weights"
