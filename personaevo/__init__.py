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
    "TraitSpace",
    "build_llm",
    "builtin_space_names",
    "check_personas",
    "load_reference_map",
    "load_space",
    "make_assessor",
    "read_persona_records",
    "resolve_space",
    "score",
    "write_personas",
]
