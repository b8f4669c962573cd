"""Conditioned user simulators: profiles, intents, UGST goal states, rollouts, consistency
and goal rewards, GRPO training and evaluation.

::

    from personaevo.simulator import (
        Simulator, ScriptedAgent, RuleJudge, load_profiles, load_goal_source,
        goals_for_profiles, simulate, open_model,
    )
    profiles, space = load_profiles(personas="personas.jsonl", space="customer_support")
    goals, template = load_goal_source(None)                  # the built-in goal template
    pairs = list(zip(profiles, goals_for_profiles(profiles, goals, template)))
    simulator = Simulator(open_model("smollm2"))   # the packaged SmolLM2-135M-Instruct
    records = simulate(simulator, ScriptedAgent(), RuleJudge(), pairs, conversations=8,
                       max_turns=6)

Importing this package (``import personaevo`` does) registers the simulator's section of
the tiny model's corpus (:mod:`personaevo.simulator.corpus_section`).
"""

from personaevo.simulator import corpus_section as _corpus_section  # noqa: F401 (registers)
from personaevo.simulator.agents import Agent, LLMAgent, ScriptedAgent
from personaevo.simulator.behaviour import BehaviourComparison, compare_behaviour, fingerprint
from personaevo.simulator.conditioning import Turn, simulator_messages
from personaevo.simulator.corpus_section import TemplateSimulator
from personaevo.simulator.curriculum import Curriculum, difficulty, prior_difficulty
from personaevo.simulator.evaluation import Comparison, evaluate_simulators
from personaevo.simulator.goal_files import (
    GoalTemplate,
    goals_for_profiles,
    load_goal_source,
    load_goals,
)
from personaevo.simulator.goals import GoalState, Status, UserGoal
from personaevo.simulator.heldout import DEFAULT_HELD_OUT, held_out_pairs
from personaevo.simulator.independent import IndependentEval, evaluate_independently
from personaevo.simulator.intents import STOP, Intent, parse_intent
from personaevo.simulator.judges import Judge, LLMJudge, RuleJudge
from personaevo.simulator.models import open_model
from personaevo.simulator.multiturn import ConversationPool, ConversationRollout
from personaevo.simulator.profiles import Profile, profile_from_persona
from personaevo.simulator.rewards import REWARDS, reward_functions
from personaevo.simulator.rollout import ConversationRecord, read_records, simulate, write_records
from personaevo.simulator.simulator import IntentPlanner, Simulator
from personaevo.simulator.sources import load_profiles
from personaevo.simulator.training import UNITS, TrainConfig, train_simulator
from personaevo.simulator.trait_fidelity import (
    TraitClassifier,
    TraitFidelity,
    TraitScorer,
    evaluate_trait_fidelity,
    fit_trait_classifier,
)
from personaevo.simulator.trajectory import TRAJECTORY_REWARDS, consistency_scores
from personaevo.simulator.verdicts import JudgementCount, Verdict

__all__ = [
    "DEFAULT_HELD_OUT",
    "REWARDS",
    "STOP",
    "TRAJECTORY_REWARDS",
    "UNITS",
    "Agent",
    "BehaviourComparison",
    "Comparison",
    "ConversationPool",
    "ConversationRecord",
    "ConversationRollout",
    "Curriculum",
    "GoalState",
    "GoalTemplate",
    "IndependentEval",
    "Intent",
    "IntentPlanner",
    "Judge",
    "JudgementCount",
    "LLMAgent",
    "LLMJudge",
    "Profile",
    "RuleJudge",
    "RunPersonas",
    "ScriptedAgent",
    "Simulator",
    "Status",
    "TemplateSimulator",
    "TrainConfig",
    "TraitClassifier",
    "TraitFidelity",
    "TraitScorer",
    "Turn",
    "UserGoal",
    "Verdict",
    "compare_behaviour",
    "consistency_scores",
    "difficulty",
    "evaluate_independently",
    "evaluate_simulators",
    "evaluate_trait_fidelity",
    "fingerprint",
    "fit_trait_classifier",
    "goals_for_profiles",
    "held_out_pairs",
    "load_goal_source",
    "load_goals",
    "load_profiles",
    "open_model",
    "parse_intent",
    "personas_from_run",
    "prior_difficulty",
    "profile_from_persona",
    "program_problems",
    "read_records",
    "reward_functions",
    "simulate",
    "simulator_messages",
    "train_simulator",
    "write_records",
]

# From winners (the run -> export -> trainer path), imported on first use: it reaches the
# export and evolution packages, and with them Ray, which `import personaevo.llm` (as in
# vLLM's own venv, scripts/vllm_cpu_env.sh) must not need.
_LAZY = {"RunPersonas", "personas_from_run", "program_problems"}


def __getattr__(name: str):
    if name in _LAZY:
        from personaevo.simulator import winners

        return getattr(winners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
