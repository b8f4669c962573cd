"""Writing a run directory: the run's record, generation by generation.

A run directory holds::

    config.yaml           the EvolveConfig (input files by absolute path; no ``out``:
                          the directory holding config.yaml is the run)
    run.json              what the run is: seed programs, space fingerprint, objectives
    programs/HASH.py      the source of every program seen (the seeds from the start)
    journal.jsonl         each evaluation of the running generation, as it returns
    evaluations.jsonl     every evaluation of the finished generations, in a fixed order:
                          hash, generation, island, operator, parents, result
    logbook.jsonl         one line per finished generation (DEAP Logbook records)
    front -> .front/ID    the current Pareto front as standalone programs (a link,
                          replaced atomically)
    checkpoint.json       populations, front, RNG state and counters after the last
                          finished generation
    checkpoint.prev.json  the one before it, in case checkpoint.json is damaged
    llm_usage.json        language-model use and the LLM mutation outcomes

Every path in the directory is relative to it, so a run can be moved or copied and
resumed where it is. ``journal.jsonl`` is the write-ahead log of a generation: an
evaluation is appended there the moment it returns, so a ``kill -9`` mid-generation
costs only the evaluations still running. When the generation ends its evaluations go to
``evaluations.jsonl`` in the order the loop made them (so a resumed run writes the same
file as an uninterrupted one), then the logbook row, the front, the previous checkpoint
and the new checkpoint (each replaced atomically), and last the journal is emptied.
Whatever the kill point, :func:`personaevo.evolution.recovery.recover_run` finds a
consistent state again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import yaml

from personaevo.errors import InputError
from personaevo.evaluate import Evaluation
from personaevo.evolution.checkpoint import (
    CHECKPOINT,
    MANIFEST,
    PREVIOUS_CHECKPOINT,
    Manifest,
    Member,
    SeedEntry,
)
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.faults import crash_point
from personaevo.evolution.loop import Evolution, Individual
from personaevo.programs import GeneratorProgram

JOURNAL = "journal.jsonl"
EVALUATIONS = "evaluations.jsonl"
LOGBOOK = "logbook.jsonl"
FRONT = "front"
FRONT_VERSIONS = ".front"
CONFIG_HEADER = (
    "# personaevo evolve: the configuration of this run. The directory holding this file\n"
    "# is the run: continue it with `personaevo evolve --resume DIR` wherever it is.\n"
)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader (or a kill) sees the old file or
    the new one, never a part; durable once it returns."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _absolute(value: str | None) -> str | None:
    """A path given relative to the working directory, made absolute; a built-in name
    (no file of that name here) stays as it is."""
    if not value:
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def recorded_config(config: EvolveConfig) -> EvolveConfig:
    """The configuration as the run records it: input files by absolute path (a resume
    from another working directory reads the same files) and no ``out``."""
    return config.model_copy(
        update={
            "space": _absolute(config.space),
            "reference": _absolute(config.reference),
            "reference_map": _absolute(config.reference_map),
            "seeds": [_absolute(s) or s for s in config.seeds],
            "out": "",
        }
    )


def write_config(root: Path, config: EvolveConfig) -> None:
    """``config.yaml`` of the run in ``root``, written atomically."""
    text = yaml.safe_dump(recorded_config(config).model_dump(), sort_keys=False)
    atomic_write(root / "config.yaml", CONFIG_HEADER + text)


class RunDirectory:
    """Reads and writes one run's files (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.programs = self.path / "programs"
        self._checkpoint_text: str | None = None  # the last checkpoint written or read

    # ----------------------------------------------------------------- start

    def create(
        self,
        config: EvolveConfig,
        seeds: list[GeneratorProgram] | None = None,
        objectives: list[str] | None = None,
        space_fingerprint: str | None = None,
    ) -> None:
        """Start a run here: refused where a run already is. With ``seeds``,
        ``objectives`` and ``space_fingerprint``, the seed programs and ``run.json`` are
        written first, so that a run killed before its first checkpoint resumes too."""
        if (self.path / "config.yaml").exists() or (self.path / CHECKPOINT).exists():
            raise InputError(
                f"{self.path}: already holds a run; use --resume {self.path} or another --out"
            )
        self.programs.mkdir(parents=True, exist_ok=True)
        for name in (EVALUATIONS, LOGBOOK, JOURNAL):
            (self.path / name).write_text("")
        if seeds is not None and objectives is not None and space_fingerprint is not None:
            for program in seeds:
                self.write_program(program.ast_hash, program.source)
            manifest = Manifest(
                space_fingerprint=space_fingerprint,
                objectives=objectives,
                seeds=[SeedEntry(key=p.ast_hash, name=p.name or "seed") for p in seeds],
            )
            atomic_write(self.path / MANIFEST, manifest.model_dump_json(indent=2))
        write_config(self.path, config)  # last: a directory with config.yaml is a run

    def write_program(self, key: str, source: str) -> None:
        """``programs/KEY.py``, written whole or not at all."""
        path = self.programs / f"{key}.py"
        if not path.exists():
            atomic_write(path, source)

    # ---------------------------------------------------------- evaluations

    def journal(self, key: str, evaluation: Evaluation) -> None:
        """Append an evaluation the moment it returns (the running generation's log)."""
        line = json.dumps({"hash": key, "evaluation": evaluation.model_dump(mode="json")})
        with (self.path / JOURNAL).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def record(self, ind: Individual, evaluation: Evaluation, generation: int, island: int) -> None:
        """Append an evaluation with its lineage to ``evaluations.jsonl`` (the loop calls
        this in the order it made the individuals, once their batch is done)."""
        self.write_program(ind.key, ind.source)
        line = {
            "hash": ind.key,
            "name": ind.name,
            "generation": generation,
            "island": island,
            "operator": ind.operator,
            "parents": ind.parents,
            "evaluation": evaluation.model_dump(mode="json"),
        }
        with (self.path / EVALUATIONS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    # ----------------------------------------------------------- checkpoint

    def checkpoint(self, evo: Evolution) -> None:
        """End a generation: make its evaluations durable, then write the logbook row,
        the front, the previous checkpoint and the new one, and empty the journal."""
        stage = f"checkpoint:{evo.generation}:"
        _fsync_file(self.path / EVALUATIONS)
        crash_point(stage + "evaluations")
        with (self.path / LOGBOOK).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(evo.logbook[-1]) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        crash_point(stage + "logbook")
        self.write_front([_member(ind) for ind in evo.front])
        crash_point(stage + "front")
        atomic_write(self.path / "llm_usage.json", json.dumps(llm_report(evo), indent=2))
        text = json.dumps(checkpoint_state(evo))
        if self._checkpoint_text is not None:
            atomic_write(self.path / PREVIOUS_CHECKPOINT, self._checkpoint_text)
        crash_point(stage + "previous")
        atomic_write(self.path / CHECKPOINT, text)
        self._checkpoint_text = text
        crash_point(stage + "checkpoint")
        (self.path / JOURNAL).write_text("")

    def remember_checkpoint(self, text: str) -> None:
        """The checkpoint a resumed run started from: kept as the previous one when the
        next is written (even if that was ``checkpoint.prev.json``)."""
        self._checkpoint_text = text

    def write_front(self, front: list[Member]) -> None:
        """``front/`` as the programs of ``front``, replaced in one step: the new files go
        to a fresh ``.front/ID/`` and the ``front`` link is switched to it."""
        versions = self.path / FRONT_VERSIONS
        versions.mkdir(exist_ok=True)
        fresh = versions / secrets.token_hex(6)
        building = versions / f"{fresh.name}.tmp"
        building.mkdir()
        for member in front:
            shutil.copyfile(self.programs / f"{member.key}.py", building / f"{member.name}.py")
        os.rename(building, fresh)
        link = self.path / ".front.link"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.join(FRONT_VERSIONS, fresh.name), link)
        front_dir = self.path / FRONT
        if front_dir.is_dir() and not front_dir.is_symlink():  # a run written before links
            os.rename(front_dir, versions / f"{secrets.token_hex(6)}.old")
        os.replace(link, front_dir)
        fsync_directory(self.path)
        for old in versions.iterdir():
            if old.name != fresh.name:
                shutil.rmtree(old, ignore_errors=True)

    def front_names(self) -> set[str] | None:
        """The program names ``front/`` holds now (None when there is no front)."""
        front_dir = self.path / FRONT
        if not front_dir.is_dir():
            return None
        return {p.stem for p in front_dir.glob("*.py")}


def _member(ind: Individual) -> Member:
    return Member(key=ind.key, name=ind.name, operator=ind.operator, parents=ind.parents)


def checkpoint_state(evo: Evolution) -> dict:
    """What ``checkpoint.json`` holds for ``evo`` (a :class:`Checkpoint` as JSON data)."""

    def entry(ind: Individual) -> dict:
        return _member(ind).model_dump()

    return {
        "generation": evo.generation,
        "islands": [[entry(ind) for ind in island] for island in evo.islands],
        "seeds": [entry(ind) for ind in evo.seeds],
        "front": [entry(ind) for ind in evo.front],
        "rng": evo.rng.bit_generator.state,
        "variation": [[op, outcome, count] for (op, outcome), count in evo.variation.items()],
        "failures": dict(evo.failures),
        "evaluations": evo.evaluations,
        "logbook": list(evo.logbook),
        "llm_usage": {part: usage.model_dump() for part, usage in evo.llm_usage.items()},
    }


def llm_report(evo: Evolution) -> dict:
    """What ``llm_usage.json`` holds: usage by part and in total (calls, requests, prompt
    and completion tokens, seconds), and the LLM mutation outcomes."""
    return {
        "generation": evo.generation,
        "model": evo.llm_mutation.llm.name if evo.llm_mutation is not None else None,
        "mutation": evo.llm_usage["mutation"].model_dump(),
        "evaluation": evo.llm_usage["evaluation"].model_dump(),
        "total": evo.llm_total().model_dump(),
        "mutation_outcomes": evo.llm_outcomes(),
        "last_error": evo.llm_error,
    }


def _fsync_file(path: Path) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.flush()
        os.fsync(handle.fileno())
