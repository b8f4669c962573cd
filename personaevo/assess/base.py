"""The assessor interface: where a persona sits in the trait space, as *measured*.

A generator declares each persona's ``traits``; an assessor decides which positions are
scored. :class:`Assessor.measure` takes persona records and returns
:class:`MeasuredPositions`: the same records with their ``traits`` replaced by measured
values in the axes' native units (so :func:`personaevo.personas.check_personas` and
:func:`personaevo.metrics.score` score the measured positions unchanged), plus one
:class:`PersonaMeasurement` per record. A record that cannot be measured (no text under
a text assessor, too many unreadable answers) becomes a
:class:`~personaevo.personas.Unmeasured` record and counts as an invalid persona with
reason ``unmeasured: <kind>``.

Measured positions are found on the unit interval first. :func:`unit_to_native` maps a
position ``u`` ∈ [0, 1] on an ordered axis to ``low + u · (high - low)`` (continuous) or
to the nearest level, ``levels[round(u · (k - 1))]`` (ordinal), the inverse of the unit
cube encoding of :mod:`personaevo.grid`.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ValidationError

from personaevo.personas import Malformed, Persona, Unmeasured
from personaevo.spaces import ContinuousAxis, OrdinalAxis, TraitSpace

AssessMethod = Literal["explicit", "questionnaire", "embedding"]
ASSESS_METHODS: tuple[str, ...] = ("explicit", "questionnaire", "embedding")

Record = Persona | dict | Malformed | Unmeasured


class PersonaMeasurement(BaseModel):
    """What an assessor found for one record. ``positions`` are unit-interval positions
    per measured ordered axis; ``reason`` says why the record is unmeasured (else None);
    ``detail`` holds assessor-specific numbers (relevance, answers)."""

    id: str | None
    reason: str | None = None
    positions: dict[str, float] = {}
    detail: dict[str, Any] = {}


class AssessmentSummary(BaseModel):
    """One population's assessment, small enough to keep with every evaluation."""

    method: str
    personas: int = 0
    measured: int = 0
    unmeasured: dict[str, int] = {}  # by kind
    seconds: float = 0.0
    detail: dict[str, Any] = {}  # assessor-specific aggregates


class MeasuredPositions(BaseModel):
    """Records with measured traits (or :class:`Unmeasured`), one measurement each."""

    model_config = {"arbitrary_types_allowed": True}

    records: list[Any]
    measurements: list[PersonaMeasurement]
    summary: AssessmentSummary


class Assessor(ABC):
    """Measures personas' trait positions. ``method`` names it (``--assess METHOD``)."""

    method: ClassVar[str]

    def measure(
        self, personas: Sequence[Record], space: TraitSpace, seed: int = 0
    ) -> MeasuredPositions:
        """Measured records for ``personas`` in ``space``; ``seed`` seeds any sampling."""
        start = time.perf_counter()
        measured = self._measure(list(personas), space, seed)
        measured.summary.seconds = round(time.perf_counter() - start, 4)
        return measured

    @abstractmethod
    def _measure(
        self, personas: list[Record], space: TraitSpace, seed: int
    ) -> MeasuredPositions: ...


def summarise(
    method: str, measurements: list[PersonaMeasurement], detail: dict[str, Any] | None = None
) -> AssessmentSummary:
    kinds = Counter(m.reason.split(":", 1)[0] for m in measurements if m.reason)
    return AssessmentSummary(
        method=method,
        personas=len(measurements),
        measured=sum(m.reason is None for m in measurements),
        unmeasured=dict(kinds.most_common()),
        detail=detail or {},
    )


def as_persona(record: Record) -> Persona | None:
    """The record as a :class:`Persona`, or None when it is malformed or already
    unmeasured (such records are passed through for the scorer to count)."""
    if isinstance(record, Persona):
        return record
    if isinstance(record, dict):
        try:
            return Persona.model_validate(record)
        except ValidationError:
            return None
    return None


def record_id(record: Record) -> str | None:
    if isinstance(record, Persona | Unmeasured):
        return record.id
    raw = record.get("id") if isinstance(record, dict) else None
    return None if raw is None else str(raw)


def persona_text(persona: Persona) -> str:
    """The free text an assessor reads: the description, then the profile (a mapping as
    ``key: value.`` lines, a list item by item, a string as it is). Empty when neither
    holds any text."""
    parts = [persona.description.strip()] if persona.description else []
    profile = persona.profile
    if isinstance(profile, dict):
        parts += [f"{key}: {_plain(value)}." for key, value in profile.items()]
    elif isinstance(profile, list):
        parts += [_plain(value) for value in profile]
    elif isinstance(profile, str):
        parts.append(profile.strip())
    return "\n".join(p for p in parts if p.strip())


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def unit_to_native(axis: ContinuousAxis | OrdinalAxis, u: float) -> float | str | int:
    """A unit position ``u`` (clipped to [0, 1]) in the axis's native units: continuous
    ``low + u · (high - low)``, ordinal the nearest level ``levels[round(u · (k - 1))]``."""
    u = min(1.0, max(0.0, float(u)))
    if isinstance(axis, ContinuousAxis):
        return float(axis.low + u * (axis.high - axis.low))
    return axis.levels[round(u * (len(axis.levels) - 1))]


def with_traits(persona: Persona, traits: dict[str, Any]) -> dict:
    """The persona as a plain record with ``traits`` replaced; the declared traits are
    kept under ``declared_traits``."""
    record = persona.model_dump(exclude_none=True)
    record["declared_traits"] = record.get("traits", {})
    record["traits"] = traits
    return record


def measured_rows(measured: MeasuredPositions) -> list[dict]:
    """One JSON-ready row per record: the measured persona (``traits`` measured,
    ``declared_traits`` as written) or why it was not measured, with its measurement."""
    rows = []
    for record, measurement in zip(measured.records, measured.measurements, strict=True):
        found = measurement.model_dump(exclude={"id"}, exclude_defaults=True)
        if isinstance(record, Persona):
            record = record.model_dump(exclude_none=True)
        if isinstance(record, dict):
            rows.append({**record, "measurement": found})
        elif isinstance(record, Unmeasured):
            reason = f"{record.kind}: {record.detail}" if record.detail else record.kind
            rows.append({"id": record.id, "unmeasured": reason, "measurement": found})
        else:
            rows.append({"id": measurement.id, "malformed": getattr(record, "reason", "")})
    return rows
