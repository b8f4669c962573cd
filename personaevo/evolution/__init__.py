"""Evolution of generator programs: DEAP's NSGA-II on islands, evaluation on Ray."""

from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.evaluator import RayEvaluator
from personaevo.evolution.loop import Evolution, Individual
from personaevo.evolution.run import run_evolution
from personaevo.evolution.store import RunDirectory

__all__ = [
    "Evolution",
    "EvolveConfig",
    "Individual",
    "RayEvaluator",
    "RunDirectory",
    "run_evolution",
]
