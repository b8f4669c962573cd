"""Finding a consistent state in a run directory before a run is resumed.

:func:`recover_run` reads everything a resume needs, before Ray starts, and either
returns it with one line per repair it made, or raises an :class:`InputError` of one line
that names the damaged file and what to do. What it repairs, like a database replaying
its write-ahead log:

* ``checkpoint.json`` unreadable: ``checkpoint.prev.json`` (the generation before) is
  used instead, and it says so; the generation after it is made again from the cache.
* no checkpoint yet (a kill before generation 0 finished): the run starts again from its
  seed programs, keeping the evaluations that had returned.
* a torn last line of ``evaluations.jsonl`` or ``journal.jsonl`` (a kill or a full disk
  mid-write) is cut back to the last whole record.
* evaluations of a generation after the checkpoint (in ``evaluations.jsonl`` or the
  journal) are kept, to be recorded again in their order when that generation ends: no
  finished evaluation runs twice.
* ``logbook.jsonl`` is rewritten from the checkpoint when it differs (a row of an
  unfinished generation, a torn row): one row per finished generation.
* a missing ``programs/HASH.py`` that ``front/`` still holds is restored from there.

A damaged line inside ``evaluations.jsonl`` cannot be repaired: it is reported with its
line number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from personaevo.errors import InputError
from personaevo.evaluate import Evaluation
from personaevo.evolution.checkpoint import (
    CHECKPOINT,
    MANIFEST,
    PREVIOUS_CHECKPOINT,
    Checkpoint,
    EvaluationRecord,
    Manifest,
    read_model,
)
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.store import (
    EVALUATIONS,
    FRONT,
    JOURNAL,
    LOGBOOK,
    RunDirectory,
    atomic_write,
)
from personaevo.programs import ContractError, load_program


@dataclass
class Recovered:
    """A run directory's state, ready to resume."""

    path: Path
    config: EvolveConfig
    manifest: Manifest | None
    checkpoint: Checkpoint | None  # None: generation 0 never finished
    checkpoint_text: str | None
    cache: dict[str, Evaluation]  # evaluations of the finished generations
    pending: dict[str, Evaluation]  # evaluations that returned after the checkpoint
    notes: list[str] = field(default_factory=list)

    @property
    def generation(self) -> int:
        """The last finished generation (-1: none)."""
        return self.checkpoint.generation if self.checkpoint is not None else -1


@dataclass
class _Line:
    number: int
    start: int  # byte offset of the line
    end: int  # byte offset after its newline
    data: dict | None  # None: not valid JSON


def recover_run(path: str | Path) -> Recovered:
    """Check and repair the run in ``path`` for a resume (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: no such run directory")
    if not (root / "config.yaml").is_file():
        raise InputError(f"{root}: no config.yaml: not a run directory made by personaevo evolve")
    config = EvolveConfig.load_run(root)
    manifest = None
    if (root / MANIFEST).exists():
        manifest = read_model(root / MANIFEST, Manifest, "what the run is")
    notes: list[str] = []
    checkpoint, text = _checkpoint(root, notes)
    generation = checkpoint.generation if checkpoint is not None else -1
    cache, pending = _evaluations(root, generation, notes)
    _journal(root, cache, pending, notes)
    if checkpoint is not None:
        _check_members(root, checkpoint, cache, notes)
        _logbook(root, checkpoint, notes)
        if RunDirectory(root).front_names() != {m.name for m in checkpoint.front}:
            RunDirectory(root).write_front(checkpoint.front)
            notes.append(f"{root / FRONT}: did not match checkpoint.json: written again")
    if pending:
        atomic_write(root / JOURNAL, "".join(_journal_line(k, e) for k, e in pending.items()))
        _truncate(root / EVALUATIONS, _committed_size(root / EVALUATIONS, generation))
    return Recovered(root, config, manifest, checkpoint, text, cache, pending, notes)


def _checkpoint(root: Path, notes: list[str]) -> tuple[Checkpoint | None, str | None]:
    current, previous = root / CHECKPOINT, root / PREVIOUS_CHECKPOINT
    try:
        checkpoint = read_model(current, Checkpoint, "the state after the last generation")
        return checkpoint, current.read_text(encoding="utf-8")
    except InputError as err:
        problem = str(err)
    if previous.exists():
        try:
            checkpoint = read_model(previous, Checkpoint, "the checkpoint before the last")
        except InputError as err:
            raise InputError(
                f"{problem}; {err}: no usable checkpoint: restore checkpoint.json from a "
                f"copy of the run, or start a new run with --out"
            ) from None
        notes.append(
            f"{problem}: resuming from {previous.name} (generation {checkpoint.generation}); "
            f"the generation after it is made again from the evaluations already recorded"
        )
        return checkpoint, previous.read_text(encoding="utf-8")
    rows = [line for line in _read_lines(root / LOGBOOK) if line.data is not None]
    if current.exists() or rows:
        raise InputError(
            f"{problem}, and there is no {previous.name}: restore checkpoint.json from a "
            f"copy of the run, or start a new run with --out"
        )
    notes.append(
        f"{current}: none yet (the run stopped before generation 0 finished): starting "
        f"generation 0 again from the seed programs"
    )
    return None, None


def _read_lines(path: Path) -> list[_Line]:
    """The lines of a JSONL file with their byte offsets; a missing file has none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    lines, start, number = [], 0, 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        whole = end != -1
        end = end + 1 if whole else len(raw)
        number += 1
        chunk = raw[start:end]
        data = None
        if whole and chunk.strip():
            try:
                data = json.loads(chunk)
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
        if chunk.strip():
            lines.append(_Line(number, start, end, data if isinstance(data, dict) else None))
        start = end
    return lines


def _cut_torn_tail(path: Path, lines: list[_Line], notes: list[str]) -> list[_Line]:
    """Cut an undecodable last line (a kill or a full disk mid-write) off the file."""
    if lines and lines[-1].data is None:
        torn = lines.pop()
        _truncate(path, torn.start)
        notes.append(
            f"{path}: line {torn.number} was cut short ({torn.end - torn.start} bytes, a "
            f"kill or a full disk mid-write): cut back to the last whole record"
        )
    return lines


def _evaluations(
    root: Path, generation: int, notes: list[str]
) -> tuple[dict[str, Evaluation], dict[str, Evaluation]]:
    path = root / EVALUATIONS
    if not path.exists():
        raise InputError(f"{path}: missing: the run directory is incomplete")
    lines = _cut_torn_tail(path, _read_lines(path), notes)
    cache: dict[str, Evaluation] = {}
    pending: dict[str, Evaluation] = {}
    later = 0
    for line in lines:
        if line.data is None:
            raise InputError(
                f"{path}: line {line.number}: not valid JSON: the file is damaged inside "
                f"(not at its end); restore it from a copy of the run"
            )
        try:
            record = EvaluationRecord.model_validate(line.data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(line)"
            raise InputError(
                f"{path}: line {line.number}: {where}: {first['msg']}: restore the file "
                f"from a copy of the run"
            ) from None
        if record.generation > generation:
            later += 1
            pending[record.hash] = record.evaluation
        elif later:
            raise InputError(
                f"{path}: line {line.number}: generation {record.generation} after "
                f"generation {generation + 1}: the records are out of order; restore the "
                f"file from a copy of the run"
            )
        else:
            cache[record.hash] = record.evaluation
    if later:
        notes.append(
            f"{path}: {later} evaluations of generation {generation + 1}, which had not "
            f"finished, are kept and recorded again when it does"
        )
    return cache, pending


def _committed_size(path: Path, generation: int) -> int:
    """Bytes of ``evaluations.jsonl`` up to the records of generation ``generation``."""
    size = 0
    for line in _read_lines(path):
        if line.data is not None and line.data.get("generation", 0) > generation:
            break
        size = line.end
    return size


def _journal(
    root: Path,
    cache: dict[str, Evaluation],
    pending: dict[str, Evaluation],
    notes: list[str],
) -> None:
    path = root / JOURNAL
    lines = _read_lines(path)
    kept = 0
    for line in lines:
        evaluation, key = None, ""
        if line.data is not None:
            try:
                evaluation = Evaluation.model_validate(line.data.get("evaluation"))
                key = str(line.data["hash"])
            except (ValidationError, KeyError):
                evaluation = None
        if evaluation is None or not key:  # a log of results that can be made again: keep its head
            _truncate(path, line.start)
            notes.append(
                f"{path}: line {line.number} was cut short or damaged: cut back to the "
                f"{kept} whole records before it (what it held is evaluated again)"
            )
            break
        if key not in cache and key not in pending:
            pending[key] = evaluation
            kept += 1
    if kept:
        notes.append(
            f"{path}: {kept} evaluations of the interrupted generation had returned: "
            f"they are kept, not run again"
        )


def _check_members(
    root: Path, checkpoint: Checkpoint, cache: dict[str, Evaluation], notes: list[str]
) -> None:
    """Every individual of the checkpoint has its program and its evaluation."""
    programs = root / "programs"
    fronts = None
    for where, member in checkpoint.members():
        path = programs / f"{member.key}.py"
        if not path.is_file():
            if fronts is None:
                fronts = _front_programs(root)
            if member.key not in fronts:
                raise InputError(
                    f"{path}: missing (the program of {member.name}, {where} in "
                    f"checkpoint.json): restore it from a copy of the run"
                )
            programs.mkdir(exist_ok=True)
            atomic_write(path, fronts[member.key])
            notes.append(f"{path}: was missing: restored from {FRONT}/{member.name}.py")
        if member.key not in cache:
            raise InputError(
                f"{root / EVALUATIONS}: no evaluation of {member.name} ({member.key[:12]}, "
                f"{where} in checkpoint.json): restore the file from a copy of the run"
            )


def _front_programs(root: Path) -> dict[str, str]:
    """``{ast hash: source}`` of the programs in ``front/``."""
    found = {}
    for file in sorted((root / FRONT).glob("*.py")):
        try:
            program = load_program(file)
        except (ContractError, OSError, UnicodeDecodeError):
            continue
        found[program.ast_hash] = program.source
    return found


def _logbook(root: Path, checkpoint: Checkpoint, notes: list[str]) -> None:
    """``logbook.jsonl`` as the checkpoint's rows, one per finished generation."""
    path = root / LOGBOOK
    expected = "".join(json.dumps(row) + "\n" for row in checkpoint.logbook)
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        current = None
    if current == expected:
        return
    had = len(current.splitlines()) if current is not None else 0
    atomic_write(path, expected)
    notes.append(
        f"{path}: had {had} rows for {len(checkpoint.logbook)} finished generations "
        f"(a kill mid-write): written again from checkpoint.json"
    )


def _journal_line(key: str, evaluation: Evaluation) -> str:
    return json.dumps({"hash": key, "evaluation": evaluation.model_dump(mode="json")}) + "\n"


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)
