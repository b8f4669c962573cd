"""personaevo: evolve persona-generator programs for coverage of rare configurations.

The public API::

    from personaevo import load_space, check_personas, read_persona_records, score
    space = load_space("customer_support")
    report = score(read_persona_records("personas.jsonl"), space)
    measured = make_assessor("embedding").measure(read_persona_records("p.jsonl"), space)
    report = score(measured.records, space)        # positions measured from the text
"""

from personaevo.assess import Assessor, MeasuredPositions, make_assessor
from personaevo.errors import InputError
from personaevo.llm import LLMConfig, build_llm
from personaevo.metrics import ScoreReport, score
from personaevo.personas import (
    CheckedPopulation,
    InvalidPersona,
    Persona,
    Provenance,
    check_personas,
    read_persona_records,
    write_personas,
)
from personaevo.reference import ReferenceMap, ReferencePopulation, load_reference_map
from personaevo.simulator import Simulator, TrainConfig, evaluate_simulators, train_simulator
from personaevo.spaces import (
    CategoricalAxis,
    Condition,
    ConsequentialConfiguration,
    Constraint,
    ContinuousAxis,
    LikertItem,
    OrdinalAxis,
    TraitSpace,
    builtin_space_names,
    load_space,
    resolve_space,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``export_personas`` loads the export machinery (and Ray with it) on first use, so
    that ``import personaevo`` (which every sandbox worker preloads) stays light."""
    if name == "export_personas":
        from personaevo.export import export_personas

        return export_personas
    raise AttributeError(f"module 'personaevo' has no attribute {name!r}")


__all__ = [
    "Assessor",
    "CategoricalAxis",
    "CheckedPopulation",
    "Condition",
    "ConsequentialConfiguration",
    "Constraint",
    "ContinuousAxis",
    "InputError",
    "InvalidPersona",
    "LLMConfig",
    "LikertItem",
    "MeasuredPositions",
    "OrdinalAxis",
    "Persona",
    "Provenance",
    "ReferenceMap",
    "ReferencePopulation",
    "ScoreReport",
    "Simulator",
    "TrainConfig",
    "TraitSpace",
    "build_llm",
    "builtin_space_names",
    "check_personas",
    "evaluate_simulators",
    "export_personas",
    "load_reference_map",
    "load_space",
    "make_assessor",
    "read_persona_records",
    "resolve_space",
    "score",
    "train_simulator",
    "write_personas",
]
