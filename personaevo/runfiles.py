"""Reading a finished (or interrupted) run directory, for export and report.

A run directory (see :mod:`personaevo.evolution.run`) holds ``config.yaml``,
``programs/HASH.py``, ``evaluations.jsonl``, ``logbook.jsonl``, ``front/*.py`` and
``checkpoint.json``. :func:`open_run` checks what is there and says what is missing or
corrupt, with the file, line and field, as an :class:`~personaevo.errors.InputError`.
Only the last line of a JSONL file may be cut short (a run killed mid-write); it is
skipped and counted. Nothing in the run directory is ever modified here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from personaevo.errors import FileFieldError, InputError
from personaevo.evolution.checkpoint import EvaluationRecord
from personaevo.evolution.config import EvolveConfig
from personaevo.programs import ContractError, GeneratorProgram, load_program
from personaevo.reference import ReferencePopulation
from personaevo.spaces import TraitSpace, resolve_space

M = TypeVar("M", bound=BaseModel)

__all__ = ["EvaluationRecord", "LogbookRow", "RunFiles", "open_run", "read_jsonl"]


class LLMAccounting(BaseModel):
    """Cumulative LLM use up to a generation."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class LogbookRow(BaseModel):
    """One generation of ``logbook.jsonl`` (a DEAP Logbook record). ``max`` and ``mean``
    are per objective, over the islands' individuals, with minimised metrics negated."""

    model_config = ConfigDict(extra="allow")

    gen: int
    evals: int = 0
    front: int = 0
    time: float | None = None
    max: list[float] = []
    mean: list[float] = []
    failures: dict[str, int] | None = None
    llm: LLMAccounting | None = None


@dataclass
class RunFiles:
    """What a run directory holds, checked."""

    path: Path
    config: EvolveConfig
    space: TraitSpace
    objectives: list[str]
    front: list[GeneratorProgram]
    _reference: ReferencePopulation | None = field(default=None, repr=False)
    _reference_built: bool = field(default=False, repr=False)
    skipped_lines: dict[str, int] = field(default_factory=dict)

    @property
    def reference(self) -> ReferencePopulation | None:
        """The run's reference population, rebuilt as the run built it (same seed)."""
        if not self._reference_built:
            self._reference = run_reference(self.config, self.space)
            self._reference_built = True
        return self._reference

    def logbook(self) -> list[LogbookRow]:
        """Every generation's logbook row, in order."""
        rows = read_jsonl(self.path / "logbook.jsonl", LogbookRow, self.skipped_lines)
        if not rows:
            raise InputError(f"{self.path / 'logbook.jsonl'}: empty: no generation was recorded")
        return rows

    def evaluations(self) -> list[EvaluationRecord]:
        """Every evaluation, in the order they were recorded."""
        return read_jsonl(self.path / "evaluations.jsonl", EvaluationRecord, self.skipped_lines)


_REFERENCES: dict[tuple, ReferencePopulation | None] = {}


def run_reference(config: EvolveConfig, space: TraitSpace) -> ReferencePopulation | None:
    """The reference population of a run, as :func:`personaevo.evolution.run_evolution`
    builds it. Built once per process for the same space, reference options and seed
    (it is only read), since a survey reference takes seconds to build."""
    key = (
        space.fingerprint,
        config.reference_map,
        config.reference,
        config.builtin_reference,
        config.seed,
    )
    if key not in _REFERENCES:
        if len(_REFERENCES) >= 4:
            _REFERENCES.pop(next(iter(_REFERENCES)))
        if config.reference_map:
            _REFERENCES[key] = ReferencePopulation.load(
                space, config.reference_map, config.reference, seed=config.seed
            )
        elif config.builtin_reference:
            _REFERENCES[key] = ReferencePopulation.default_for(space, seed=config.seed)
        else:
            _REFERENCES[key] = None
    return _REFERENCES[key]


def open_run(path: str | Path) -> RunFiles:
    """Check a run directory and load its configuration, space and front programs."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such run directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected a run made by personaevo evolve)")
    config_path = root / "config.yaml"
    if not config_path.is_file():
        raise InputError(
            f"{root}: no config.yaml: not a personaevo run directory "
            "(made by `personaevo evolve --out DIR`)"
        )
    config = EvolveConfig.load_run(root)
    try:
        space = resolve_space(config.space)
    except InputError as err:
        raise FileFieldError(config_path, "space", str(err)) from None
    for name in ("evaluations.jsonl", "logbook.jsonl"):
        if not (root / name).is_file():
            raise InputError(f"{root}: no {name}: the run directory is incomplete")
    front_dir = root / "front"
    files = sorted(front_dir.glob("*.py")) if front_dir.is_dir() else []
    if not files:
        raise InputError(
            f"{front_dir}: no front programs: the run has not finished its first generation"
        )
    front = []
    for file in files:
        try:
            front.append(load_program(file))
        except ContractError as err:
            raise InputError(f"{file}: not a valid generator program: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{file}: cannot read: {err}") from None
    has_reference = bool(config.reference_map) or (
        config.builtin_reference and space.reference is not None
    )
    return RunFiles(
        path=root,
        config=config,
        space=space,
        objectives=config.resolved_objectives(has_reference),
        front=front,
    )


def read_jsonl(path: Path, model: type[M], skipped: dict[str, int]) -> list[M]:
    """Rows of a JSONL file as ``model``. An undecodable *last* line (cut short by a
    kill) is skipped and counted in ``skipped``; any other bad line is an error that
    names the file, the line and the field."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text: the file is corrupt") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for position, (lineno, line) in enumerate(numbered):
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as err:
            if position == len(numbered) - 1:
                skipped[path.name] = skipped.get(path.name, 0) + 1
                continue
            raise FileFieldError(path, f"line {lineno}", f"not valid JSON ({err.msg})") from None
        try:
            rows.append(model.model_validate(data))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(line)"
            raise FileFieldError(path, f"line {lineno}: {where}", first["msg"]) from None
    return rows
