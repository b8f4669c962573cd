"""Training a user simulator with GRPO (TRL's ``GRPOTrainer``).

:func:`train_simulator` takes a :class:`TrainConfig` and

1. checks every input before any training (model folder, personas, goals, intents,
   rewards, curriculum; :class:`~personaevo.errors.InputError` otherwise);
2. splits the personas into training and held-out ones (``held_out`` share, a quarter by
   default, seeded; the held-out personas and their goals are written to
   ``OUT/heldout.jsonl`` and ``OUT/heldout_goals.json`` for ``eval-simulator``,
   :mod:`personaevo.simulator.heldout`). With ``run``, the personas are the run's export
   (:mod:`personaevo.simulator.winners`, files in ``OUT``), and every front program that
   failed is logged and listed in ``OUT/summary.json`` under ``programs``;
3. trains with ``GRPOTrainer``: ``group_size`` completions per prompt, ``prompts_per_step``
   prompts per optimizer step, TRL's ``loss_type`` and KL weight ``beta``, truncated
   completions masked out of the loss (tiny models otherwise learn to pad to the limit),
   one reward function per reward name, each logged by TRL as ``rewards/NAME/mean``. Beside
   it, for a reward that asks the judge, each logged step carries ``judgements/NAME`` (the
   judge's verdicts since the previous log) and ``unreadable/NAME`` (those neither yes nor
   no, left out of the reward; see :mod:`personaevo.simulator.rewards`). The prompts come
   from on-policy rollouts refreshed every ``refresh_every`` steps
   (:mod:`personaevo.simulator.pool`);
4. writes a checkpoint every ``save_steps`` steps (``OUT/checkpoint-N``) and at the end the
   model to ``OUT/final`` (with ``lora``: the adapter to ``OUT/adapter`` and the merged
   model to ``OUT/final``) and ``OUT/summary.json`` (reward curves, refresh reports, and
   ``judgements``: per reward, the judge's verdicts of this run, unreadable ones counted;
   after a resume, those since the resume).

With ``unit="conversation"`` (the default) a GRPO sample is a whole conversation played
by the policy, rewarded with the per-turn rewards' means and trajectory rewards (final
goal alignment, task completion, consistency over all the user's lines), through TRL's
``rollout_func`` with the agent's tokens masked out of the loss
(:mod:`personaevo.simulator.multiturn`, :mod:`personaevo.simulator.trajectory`,
``docs/simulator-training.md``); ``unit="turn"`` keeps one user turn per sample as above.

A run killed midway continues with ``resume=True`` from its last checkpoint (the optimizer,
scheduler, RNG states and step count are restored by ``transformers``; the prompt pool is
rebuilt with the restored weights). With ``lora`` a PEFT LoRA adapter is trained instead of
all weights. On a GPU, bf16 is used when supported, and ``vllm="auto"`` generates with
vLLM (colocated) when the ``vllm`` extra is installed; on CPU bf16 is off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from personaevo.bounds import MAX_SEED
from personaevo.errors import InputError
from personaevo.llm import SamplingParams
from personaevo.llm.config import default_model
from personaevo.simulator.curriculum import SCHEDULES, Curriculum, prior_difficulty
from personaevo.simulator.goal_files import goals_for_profiles, load_goal_source
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.heldout import CONFIG_FILE, DEFAULT_HELD_OUT, write_held_out
from personaevo.simulator.models import check_model_spec
from personaevo.simulator.profiles import Profile, profile_from_persona
from personaevo.simulator.rewards import (
    OPTIONAL_REWARDS,
    REWARDS,
    CountedReward,
    counted_reward_functions,
)
from personaevo.simulator.simulator import IntentPlanner, parse_intents
from personaevo.simulator.sources import load_profiles
from personaevo.simulator.training_log import (
    judgement_log_callback,
    progress_callback,
    reward_curves,
)
from personaevo.simulator.trajectory import TRAJECTORY_REWARDS
from personaevo.simulator.verdicts import JudgementCount

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
UNITS = ("conversation", "turn")


class TrainConfig(BaseModel):
    """Every option of ``personaevo train-simulator``, with its default."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default_factory=default_model,
        description="A packaged model's name (smollm2, the default; gemma3-270m), 'tiny' for "
        "the project's tiny test model, or a local model folder.",
    )
    personas: str | None = Field(None, description="Persona JSONL file (or an export).")
    run: str | None = Field(None, description="Evolution run directory (its front programs).")
    space: str | None = Field(None, description="Space the persona file is validated against.")
    goals: str | None = Field(None, description="Goal file or template; default: built-in.")
    out: str = Field("runs/simulator", description="Output folder.")
    steps: int = Field(200, ge=1, description="Optimizer steps.")
    unit: Literal["conversation", "turn"] = Field(
        "conversation",
        description="GRPO sample: a whole conversation (trajectory and per-turn rewards) "
        "or one user turn (per-turn rewards).",
    )
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    group_size: int = Field(4, ge=2, description="Completions per prompt (GRPO group).")
    prompts_per_step: int = Field(4, ge=1)
    loss_type: str = Field("dapo", description=f"TRL loss: {', '.join(LOSS_TYPES)}.")
    beta: float = Field(0.04, ge=0, description="KL weight against the initial model.")
    learning_rate: float = Field(1e-5, gt=0)
    temperature: float = Field(1.0, gt=0)
    max_completion_length: int = Field(48, ge=4)
    refresh_every: int = Field(10, ge=1, description="Steps between on-policy refreshes (K).")
    rollout_conversations: int = Field(16, ge=1)
    max_turns: int = Field(4, ge=1, description="User turns per rollout conversation.")
    window: int = Field(6, ge=1, description="History messages in the simulator's input.")
    pool_size: int = Field(64, ge=1)
    curriculum: str = Field("uniform", description=f"One of {', '.join(SCHEDULES)}.")
    held_out: float = Field(
        DEFAULT_HELD_OUT, ge=0, lt=1, description="Share of personas held out for evaluation."
    )
    rewards: list[str] = Field(default_factory=lambda: list(REWARDS))
    trajectory_rewards: list[str] = Field(
        default_factory=lambda: list(TRAJECTORY_REWARDS),
        description="Conversation-level rewards (unit 'conversation' only).",
    )
    reward_weights: dict[str, float] = Field(default_factory=dict)
    trait_classifier: str | None = Field(
        None,
        description="Classifier file of the trait_fidelity reward (eval-simulator "
        "--save-trait-classifier).",
    )
    intents: list[str] = Field(default_factory=list, description="Allowed intents; [] = all.")
    qa_questions: int = Field(1, ge=0, description="Q&A probes asked after each turn row.")
    qa_prompt_share: float = Field(
        0.25, ge=0, le=1, description="Share of training rows that are Q&A probe prompts."
    )
    agent: str = Field("scripted", description="Rollout agent: 'scripted' or a model spec.")
    agent_refusal: float = Field(0.2, ge=0, le=1, description="Scripted agent's stall rate.")
    judge: str = Field("rules", description="Reward judge: 'rules' or a model spec.")
    save_steps: int | None = Field(None, ge=1, description="Default: refresh_every.")
    n_per_program: int = Field(
        20,
        ge=1,
        description="Personas per front program exported from --run (n = this x programs).",
    )
    vllm: Literal["auto", "on", "off"] = "auto"
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("loss_type")
    @classmethod
    def _loss(cls, value: str) -> str:
        if value not in LOSS_TYPES:
            raise ValueError(f"unknown loss type {value!r} (use one of {', '.join(LOSS_TYPES)})")
        return value

    @field_validator("curriculum")
    @classmethod
    def _curriculum(cls, value: str) -> str:
        if value not in SCHEDULES:
            raise ValueError(f"unknown curriculum {value!r} (use one of {', '.join(SCHEDULES)})")
        return value

    @field_validator("rewards")
    @classmethod
    def _rewards(cls, value: list[str]) -> list[str]:
        known = {**REWARDS, **OPTIONAL_REWARDS}
        unknown = [r for r in value if r not in known]
        if unknown or not value:
            raise ValueError(f"unknown rewards {unknown} (known: {', '.join(known)})")
        return value

    @field_validator("trajectory_rewards")
    @classmethod
    def _trajectory(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in TRAJECTORY_REWARDS]
        if unknown:
            raise ValueError(
                f"unknown trajectory rewards {unknown} (known: {', '.join(TRAJECTORY_REWARDS)})"
            )
        return value

    def reward_names(self) -> list[str]:
        """The rewards this run trains on, in TRL's order."""
        if self.unit == "turn":
            return list(self.rewards)
        return [*self.rewards, *self.trajectory_rewards]

    def save(self, folder: Path) -> None:
        (folder / CONFIG_FILE).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> TrainConfig:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise InputError(f"{folder}: no training run to resume (no {CONFIG_FILE})")
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("unit", "turn")  # runs saved before the conversation unit
        return cls.model_validate(data)


def resolve_model(model: str) -> Path:
    """A model folder: ``tiny`` is the project's tiny model (built on first use), a
    packaged model's name its converted folder (converted on first use)."""
    if model == "tiny":
        from personaevo.llm.tiny import tiny_model_path

        return tiny_model_path()
    from personaevo.llm.packaged import is_packaged_model, packaged_model_path

    if is_packaged_model(model) and not Path(model).exists():
        return packaged_model_path(model)
    path = Path(model.removeprefix("transformers:")).expanduser()
    if not path.exists():
        raise InputError(f"--model {model}: no such model folder")
    if not (path / "config.json").is_file():
        raise InputError(f"--model {model}: not a model folder (no config.json)")
    return path


def last_checkpoint(out: Path) -> Path | None:
    """The checkpoint with the highest step in ``out``."""
    found = [p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


@dataclass
class Prepared:
    """What :func:`prepare` checked and built (before any training)."""

    model_path: Path
    train: list[tuple[Profile, UserGoal]]
    held_out: list[tuple[Profile, UserGoal]]
    difficulties: list[float]
    planner: IntentPlanner
    program_problems: list[str]  # front programs of ``run`` that failed (one line each)


def prepare(
    config: TrainConfig, resume: bool = False, log: Callable[[str], None] | None = None
) -> Prepared:
    """Check every input and split the personas; raises :class:`InputError` on bad input.
    A run's personas are exported into ``config.out`` (reused when ``resume``)."""
    planner = IntentPlanner(parse_intents(config.intents, "--intents"))
    unknown = sorted(set(config.reward_weights) - set(config.reward_names()))
    if unknown:
        raise InputError(f"--reward-weights: {unknown} are not among the rewards used")
    optional = sorted(set(config.rewards) - set(REWARDS))
    if config.unit == "conversation" and optional:
        raise InputError(f"--rewards {optional}: only with --unit turn for now")
    if config.unit == "conversation" and config.vllm == "on":
        raise InputError("--vllm on: the conversation unit generates with transformers")
    model_path = resolve_model(config.model)
    for spec in (config.agent, config.judge):
        if spec not in ("scripted", "rules"):
            check_model_spec(spec)
    problems: list[str] = []
    if config.run is not None and config.personas is None:
        from personaevo.simulator.winners import personas_from_run

        got = personas_from_run(
            config.run, config.out, config.n_per_program, config.seed, reuse=resume, log=log
        )
        profiles = [profile_from_persona(p, got.space, config.seed) for p in got.personas]
        space, problems = got.space, got.problems
    else:
        profiles, space = load_profiles(config.personas, config.run, config.space, config.seed)
    goals, template = load_goal_source(config.goals)
    assigned = goals_for_profiles(profiles, goals, template, config.seed)
    pairs = list(zip(profiles, assigned, strict=True))
    order = np.random.default_rng([config.seed, 7]).permutation(len(pairs))
    n_held = round(config.held_out * len(pairs))
    if len(pairs) - n_held < 1:
        raise InputError(f"{len(pairs)} personas leave none for training after the held-out share")
    held = [pairs[int(i)] for i in order[:n_held]]
    train = [pairs[int(i)] for i in order[n_held:]]
    return Prepared(
        model_path=model_path,
        train=train,
        held_out=held,
        difficulties=prior_difficulty([p for p, _ in train], space),
        planner=planner,
        program_problems=problems,
    )


def _use_vllm(mode: str) -> bool:
    import importlib.util

    import torch

    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if mode == "on" and not available:
        raise InputError("--vllm on: needs the vllm extra and a GPU (pip install '.[vllm]')")
    return available if mode == "auto" else mode == "on"


def build_trainer(config: TrainConfig, prepared: Prepared, out: Path):
    """The configured ``GRPOTrainer`` (its prompt pool refreshes itself on train begin)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from personaevo.simulator.models import open_agent, open_judge
    from personaevo.simulator.policy import PolicyLLM, TrainerPolicy
    from personaevo.simulator.pool import PromptPool, refresh_callback
    from personaevo.simulator.trait_fidelity import reward_binding

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(prepared.model_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(prepared.model_path)
    judge = open_judge(config.judge)
    params = SamplingParams(max_tokens=config.max_completion_length, temperature=config.temperature)
    conversation = config.unit == "conversation"
    if conversation:
        from personaevo.simulator.multiturn import ConversationPool as PromptPool
    pool = PromptPool(
        profiles=[p for p, _ in prepared.train],
        goals=[g for _, g in prepared.train],
        curriculum=Curriculum(prepared.difficulties, config.curriculum, seed=config.seed),
        agent=open_agent(config.agent, config.agent_refusal),
        judge=judge,
        planner=prepared.planner,
        params=params,
        size=config.pool_size,
        conversations=config.rollout_conversations,
        max_turns=config.max_turns,
        window=config.window,
        qa_questions=config.qa_questions,
        # a probe row is scored by qa_consistency alone: without it, probes train nothing
        probe_share=config.qa_prompt_share if "qa_consistency" in config.rewards else 0.0,
        total_steps=config.steps,
        seed=config.seed,
        save_dir=out / "rollouts",
    )
    holder: dict = {}

    def make_llm(live_model) -> PolicyLLM:
        return TrainerPolicy(holder["trainer"], tokenizer)

    answerer = _LiveAnswerer(holder, tokenizer)
    if conversation:
        funcs, rollout = _conversation_parts(config, pool, judge, answerer, tokenizer, params)
    else:
        rollout = None
        bound = reward_binding(
            config.rewards, config.trait_classifier, [p for p, _ in prepared.train]
        )
        funcs = counted_reward_functions(
            config.rewards, judge, answerer if "qa_consistency" in config.rewards else None, bound
        )
    weights = [config.reward_weights.get(name, 1.0) for name in config.reward_names()]
    args = GRPOConfig(
        output_dir=str(out),
        max_steps=config.steps,
        per_device_train_batch_size=config.prompts_per_step * config.group_size,
        num_generations=config.group_size,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_k=0,
        learning_rate=config.learning_rate,
        beta=config.beta,
        loss_type=config.loss_type,
        mask_truncated_completions=True,
        reward_weights=weights,
        logging_steps=1,
        save_steps=config.save_steps or config.refresh_every,
        save_strategy="steps",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_vllm=not conversation and _use_vllm(config.vllm),
        vllm_mode="colocate",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    peft_config = None
    if config.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=pool.dataset(),
        processing_class=tokenizer,
        callbacks=[
            refresh_callback(pool, config.refresh_every, make_llm),
            judgement_log_callback(funcs),
        ],
        peft_config=peft_config,
        rollout_func=rollout,
    )
    holder["model"], holder["trainer"] = trainer.model, trainer
    return trainer, pool


def _conversation_parts(config: TrainConfig, pool, judge, answerer, tokenizer, params):
    """The conversation unit's reward functions and TRL ``rollout_func``
    (:mod:`personaevo.simulator.multiturn`, :mod:`personaevo.simulator.trajectory`)."""
    from personaevo.simulator.multiturn import ConversationRollout
    from personaevo.simulator.trajectory import TrajectoryScorer, conversation_rewards

    scorer = TrajectoryScorer(
        config.rewards,
        config.trajectory_rewards,
        judge,
        answerer if "qa_consistency" in config.rewards else None,
        config.qa_questions,
        config.window,
        config.max_turns,
        pool.pools,
        config.seed,
    )
    rollout = ConversationRollout(
        pool, pool.agent, judge, tokenizer, params, config.group_size, config.seed
    )
    return conversation_rewards(scorer), rollout


class _LiveAnswerer:
    """The Q&A answerer: the trainer's current model, looked up at call time."""

    def __init__(self, holder: dict, tokenizer) -> None:
        self.holder, self.tokenizer = holder, tokenizer
        self.name = "policy"

    def chat(self, conversations, params=None):
        from personaevo.simulator.policy import TrainerPolicy

        return TrainerPolicy(self.holder["trainer"], self.tokenizer).chat(conversations, params)


class TrainResult(BaseModel):
    out: str
    final_model: str
    steps: int
    resumed_from: str | None
    seconds: float
    first_rewards: dict[str, float]
    last_rewards: dict[str, float]
    judgements: dict[str, JudgementCount] = Field(default_factory=dict)  # per reward, this run
    program_problems: list[str] = Field(default_factory=list)  # failing front programs (--run)


def train_simulator(
    config: TrainConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    callbacks: list | None = None,
) -> TrainResult:
    """Train (or resume) a simulator; see the module docstring."""
    out = Path(config.out)
    checkpoint = last_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise InputError(f"{out}: no checkpoint to resume from")
    if not resume and (out / CONFIG_FILE).exists():
        raise InputError(f"{out}: already holds a training run; use --resume or another --out")
    prepared = prepare(config, resume=resume, log=log)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    write_held_out(out, prepared.held_out)
    log(
        f"model {prepared.model_path}; {len(prepared.train)} training personas, "
        f"{len(prepared.held_out)} held out; {config.steps} steps"
    )
    trainer, pool = build_trainer(config, prepared, out)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress_callback(log, config.reward_names()))
    for callback in callbacks or []:
        trainer.add_callback(callback)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    final = out / "final"
    if config.lora:  # keep the adapter, and write the merged model that any backend loads
        trainer.model.save_pretrained(str(out / "adapter"))
        trainer.model.merge_and_unload().save_pretrained(str(final))
    else:
        trainer.save_model(str(final))
    trainer.processing_class.save_pretrained(str(final))
    history = trainer.state.log_history
    judgements = {f.__name__: f.count for f in trainer.reward_funcs if isinstance(f, CountedReward)}
    summary = {
        "config": config.model_dump(),
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "rewards": reward_curves(history),
        "refreshes": [r.model_dump() for r in pool.reports],
        "judgements": {name: count.model_dump() for name, count in judgements.items()},
        "programs": prepared.program_problems,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    curves = summary["rewards"]
    return TrainResult(
        out=str(out),
        final_model=str(final),
        steps=trainer.state.global_step,
        resumed_from=summary["resumed_from"],
        seconds=round(seconds, 1),
        first_rewards={k: v[0][1] for k, v in curves.items() if v},
        last_rewards={k: v[-1][1] for k, v in curves.items() if v},
        judgements=judgements,
        program_problems=prepared.program_problems,
    )
