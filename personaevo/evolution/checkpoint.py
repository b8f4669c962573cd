"""The files of a run directory that say where a run stands, as pydantic models:
``checkpoint.json`` (the state after the last finished generation), ``run.json`` (what
the run is: the seed programs, the space's fingerprint and the objectives, fixed when it
starts) and the lines of ``evaluations.jsonl``.

A damaged file is reported as one line that names the file and the field, never as a
traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from personaevo.errors import InputError
from personaevo.evaluate import Evaluation

CHECKPOINT = "checkpoint.json"
PREVIOUS_CHECKPOINT = "checkpoint.prev.json"
MANIFEST = "run.json"


class EvaluationRecord(BaseModel):
    """One line of ``evaluations.jsonl``."""

    hash: str
    name: str
    generation: int
    island: int
    operator: str
    parents: list[str] = []
    evaluation: Evaluation


class Member(BaseModel):
    """An individual of the checkpoint: its program (``programs/KEY.py``) and lineage."""

    key: str
    name: str
    operator: str
    parents: list[str] = []


class Checkpoint(BaseModel):
    """Populations, front, RNG state and counters after generation ``generation``."""

    model_config = ConfigDict(extra="allow")

    generation: int
    islands: list[list[Member]]
    seeds: list[Member]
    front: list[Member]
    rng: dict[str, Any]
    variation: list[tuple[str, str, int]] = []
    failures: dict[str, int] = {}
    evaluations: int
    logbook: list[dict[str, Any]]
    llm_usage: dict[str, dict[str, Any]] = {}

    def members(self) -> list[tuple[str, Member]]:
        """Every individual with where the checkpoint holds it (``island 0``, ``seeds``,
        ``front``)."""
        found = [("seeds", m) for m in self.seeds]
        for i, island in enumerate(self.islands):
            found += [(f"island {i}", m) for m in island]
        return found + [("front", m) for m in self.front]


class SeedEntry(BaseModel):
    """A seed program of the run: ``programs/KEY.py`` under its name."""

    key: str
    name: str


class Manifest(BaseModel):
    """``run.json``: what a run is, written once when it starts. A resumed run must have
    the same space (by fingerprint) and objectives."""

    format: int = 2
    space_fingerprint: str
    objectives: list[str]
    seeds: list[SeedEntry]


def read_model(path: Path, model: type[BaseModel], what: str) -> BaseModel:
    """``path`` parsed as ``model``; an :class:`InputError` of one line saying what is
    wrong with it (``what`` says what the file is for)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read ({what}): {err}") from None
    if not text.strip():
        raise InputError(f"{path}: empty ({what}): cut short by a kill or a full disk")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: not valid JSON at line {err.lineno} ({what}): cut short or damaged"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise InputError(f"{path}: {where}: {first['msg']} ({what})") from None
