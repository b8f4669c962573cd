"""Personas and persona files.

A persona file is JSONL, one object per line, at least ``{"id": ..., "traits": {...}}``;
optional ``description`` (free text), ``profile`` (facts a simulator is conditioned
on) and ``provenance`` (``generator``, ``program_hash``, ``seed``). Unknown top-level
keys are kept. Validation against a space never clips, coerces or drops silently: each
invalid persona is kept with its reasons.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from personaevo.errors import FileFieldError, not_a_file
from personaevo.spaces import ContinuousAxis, TraitSpace


class Provenance(BaseModel):
    """Where a persona came from."""

    model_config = ConfigDict(extra="allow")

    generator: str | None = None
    program_hash: str | None = None
    seed: int | None = None


class Persona(BaseModel):
    """One persona: trait values plus optional text and facts."""

    model_config = ConfigDict(extra="allow")

    id: str
    traits: dict[str, Any]
    description: str | None = None
    profile: dict[str, Any] | list[Any] | str | None = None
    provenance: Provenance | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class InvalidPersona(BaseModel):
    """A record that failed validation, with every reason found."""

    index: int
    id: str | None
    reasons: list[str]


@dataclass
class Malformed:
    """A persona-file line that could not be read as a JSON object."""

    reason: str


@dataclass
class Unmeasured:
    """A persona whose traits an assessor could not measure (no text, unreadable
    answers); counted invalid with the reason ``unmeasured: <kind>: <detail>``."""

    id: str | None
    kind: str
    detail: str = ""


@dataclass
class Missing:
    """A persona asked for and not returned (a program wrote fewer than ``n``): counted
    invalid with the reason ``missing: <detail>``, so a short set scores as what it is."""

    detail: str = ""


@dataclass
class CheckedPopulation:
    """The outcome of validating records against a space."""

    space: TraitSpace
    valid: list[Persona]
    invalid: list[InvalidPersona]
    native: np.ndarray = field(repr=False)  # (n_valid, d), see personaevo.grid

    @property
    def n_total(self) -> int:
        return len(self.valid) + len(self.invalid)

    @property
    def validity(self) -> float:
        """Fraction of records that are valid personas (0 for an empty population)."""
        return len(self.valid) / self.n_total if self.n_total else 0.0

    def reason_counts(self) -> dict[str, int]:
        """Invalid personas counted by kind of reason (first reason of each persona)."""
        return dict(Counter(reason_kind(p.reasons[0]) for p in self.invalid).most_common())


_REASON_KINDS = (
    "expected a number",
    "non-finite value",
    "out of range",
    "unknown value",
)


def reason_kind(reason: str) -> str:
    """Collapse a reason to its kind, e.g. ``age: out of range: ...`` -> ``out of range``."""
    if reason.startswith("infeasible: "):
        return reason
    for prefix in ("unknown axis", "missing axis", "malformed", "missing"):
        if reason.startswith(prefix):
            return prefix
    if reason.startswith("unmeasured: "):
        return ": ".join(reason.split(": ")[:2])
    detail = reason.split(": ", 1)[-1]
    return next((k for k in _REASON_KINDS if detail.startswith(k)), re.sub(r"'.*", "", reason))


def check_personas(
    records: Iterable[Persona | dict | Malformed | Unmeasured | Missing], space: TraitSpace
) -> CheckedPopulation:
    """Validate records against ``space``: schema, every axis present and in range,
    no unknown axes, constraints satisfied.

    Valid-looking records are checked column by column and their constraints in one
    vectorised pass; only records that fail are re-checked one by one for their reasons."""
    records = list(records)
    personas: list[Persona | None] = []
    problems: dict[int, list[str]] = {}
    for index, record in enumerate(records):
        persona, reason = _as_persona(record)
        personas.append(persona)
        if reason:
            problems[index] = [reason]
    candidates = [i for i, p in enumerate(personas) if p is not None]
    traits = [personas[i].traits for i in candidates]
    native, ok = _native_columns(space, traits)
    feasible = np.zeros(len(candidates), dtype=bool)
    feasible[ok] = space.grid.feasible_mask(native[ok])
    for k, i in enumerate(candidates):
        if not feasible[k]:
            problems[i] = space.check_traits(traits[k])
    valid = [personas[i] for k, i in enumerate(candidates) if feasible[k]]
    invalid = [
        InvalidPersona(index=i, id=_record_id(records[i]), reasons=problems[i])
        for i in sorted(problems)
    ]
    return CheckedPopulation(space=space, valid=valid, invalid=invalid, native=native[feasible])


_PLAIN_KEYS = frozenset({"id", "traits"})


def _as_persona(record: Any) -> tuple[Persona | None, str]:
    """A Persona and "" or None and why the record is malformed."""
    if isinstance(record, Persona):
        return record, ""
    if isinstance(record, Malformed):
        return None, f"malformed: {record.reason}"
    if isinstance(record, Unmeasured):
        detail = f": {record.detail}" if record.detail else ""
        return None, f"unmeasured: {record.kind}{detail}"
    if isinstance(record, Missing):
        return None, f"missing: {record.detail}" if record.detail else "missing"
    if (
        isinstance(record, dict)
        and record.keys() == _PLAIN_KEYS
        and isinstance(record["traits"], dict)
        and type(record["id"]) in (str, int)
    ):  # the common case, checked by hand: no pydantic round trip
        return Persona.model_construct(id=str(record["id"]), traits=record["traits"]), ""
    try:
        return Persona.model_validate(record), ""
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return None, f"malformed: {where}: {first['msg']}"


def _record_id(record: Any) -> str | None:
    if isinstance(record, Persona | Unmeasured):
        return record.id
    raw = record.get("id") if isinstance(record, dict) else None
    return None if raw is None else str(raw)


def _native_columns(
    space: TraitSpace, traits: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Native matrix of trait mappings and a mask of rows whose every value is valid
    (right axes, numbers finite and in range, known levels); other rows hold junk."""
    n = len(traits)
    native = np.zeros((n, space.dim))
    ok = np.array([len(t) == space.dim for t in traits], dtype=bool)
    missing = object()
    for j, axis in enumerate(space.axes):
        column = [t.get(axis.name, missing) for t in traits]
        if isinstance(axis, ContinuousAxis):
            for k, value in enumerate(column):
                if type(value) in (float, int) and axis.low <= value <= axis.high:
                    native[k, j] = value
                else:
                    ok[k] = False  # also catches NaN, which fails both comparisons
        else:
            for k, value in enumerate(column):
                i = axis.index(value)
                if i is None:
                    ok[k] = False
                else:
                    native[k, j] = i
    return native, ok


def read_persona_records(path: str | Path) -> list[dict | Malformed]:
    """Read a JSONL persona file. Lines that are not JSON objects are returned as
    :class:`Malformed` (and later counted invalid), never skipped; blank lines are ignored."""
    path = Path(path)
    if (problem := not_a_file(path, "persona file (JSONL)")) is not None:
        raise FileFieldError(path, "(file)", problem)
    records: list[dict | Malformed] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_reject_constant)
            except ValueError as err:
                records.append(Malformed(f"line {lineno}: not valid JSON ({err})"))
                continue
            if not isinstance(obj, dict):
                records.append(Malformed(f"line {lineno}: expected a JSON object"))
            else:
                records.append(obj)
    return records


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def write_personas(path: str | Path, personas: Iterable[Persona | dict]) -> int:
    """Write personas as JSONL (NaN/inf refused); returns the number written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for persona in personas:
            obj = persona.model_dump(exclude_none=True) if isinstance(persona, Persona) else persona
            handle.write(json.dumps(obj, allow_nan=False, ensure_ascii=False) + "\n")
            count += 1
    return count


def personas_from_native(
    space: TraitSpace,
    native: np.ndarray,
    prefix: str = "p",
    generator: str | None = None,
    seed: int | None = None,
) -> list[Persona]:
    """Personas for the rows of a native matrix (ids ``{prefix}{i}``)."""
    provenance = (
        Provenance(generator=generator, seed=seed) if generator or seed is not None else None
    )
    return [
        Persona(id=f"{prefix}{i}", traits=traits, provenance=provenance)
        for i, traits in enumerate(space.grid.to_traits(native))
    ]
