"""What the report shows, read from a run directory (and its latest export).

Per generation, from ``evaluations.jsonl``: the Pareto front of every program evaluated
so far (non-dominated on the run's objectives, as the run's hall of fame keeps it), the
best-so-far and median of coverage and rare-hit metrics, and the outcome of each
evaluation (ok or its failure kind). From ``logbook.jsonl``: the population's max and mean
of each objective, and the cumulative language-model accounting when a model was used.
The export comes from ``--personas FILE`` or the last line of the run's ``exports.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personaevo.errors import InputError, not_a_file
from personaevo.evolution.loop import objective_values
from personaevo.export.api import INDEX, export_paths
from personaevo.export.models import ExportSummary
from personaevo.export.records import native_of, read_records
from personaevo.metrics import ScoreReport
from personaevo.runfiles import LogbookRow, RunFiles

TRACKED = (
    "mc_coverage",
    "tway_coverage.3",
    "reference.support_coverage_tway.3",
    "reference.rare_hits_tway.2",
    "reference.rare_hits_tway.3",
    "consequential_hits",
)


@dataclass
class ExportData:
    """An export of the run: its records (as native rows) and summary, if found."""

    path: Path
    native: np.ndarray
    rarity: np.ndarray  # NaN where unknown
    rare: np.ndarray  # bool
    summary: ExportSummary | None


@dataclass
class ReportData:
    """Everything the report draws."""

    files: RunFiles
    generations: list[int]
    points: np.ndarray  # (e, k) objective values of successful evaluations (larger better)
    point_generation: np.ndarray  # (e,)
    fronts: dict[int, np.ndarray]  # generation -> indices into points
    tracked: dict[str, dict[str, list[float]]]  # metric -> {"best": [...], "median": [...]}
    outcomes: dict[int, Counter]  # generation -> outcome -> evaluations
    logbook: list[LogbookRow]
    llm: list[tuple[int, dict[str, float]]]  # (generation, cumulative accounting)
    export: ExportData | None
    notes: list[str] = field(default_factory=list)

    def front_size(self) -> tuple[int, int]:
        """``(distinct objective vectors, programs)`` on the final front. The run keeps one
        program per objective vector (``front/*.py``, ``evolve``'s "front of N"); programs
        that tie with it are counted apart."""
        front = self.points[self.fronts[self.generations[-1]]]
        distinct = len(np.unique(front, axis=0)) if len(front) else 0
        return distinct, len(front)

    def front_text(self) -> str:
        """The final front as ``evolve`` counts it, with the tied programs beside it."""
        distinct, programs = self.front_size()
        text = f"{distinct} distinct objective vectors"
        if programs > distinct:
            text += f" ({programs} programs, ties included)"
        return text


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row dominates (all >= and one >; larger is better)."""
    keep = []
    for i in range(len(points)):
        ge = (points >= points[i]).all(axis=1)
        gt = (points > points[i]).any(axis=1)
        if not (ge & gt).any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def gather(files: RunFiles, personas: str | Path | None = None) -> ReportData:
    """Read the run (and export) into :class:`ReportData`."""
    records = files.evaluations()
    logbook = files.logbook()
    generations = sorted({r.gen for r in logbook} | {r.generation for r in records})
    objectives = files.objectives
    values, value_gen = [], []
    outcomes: dict[int, Counter] = {g: Counter() for g in generations}
    per_gen: dict[int, dict[str, list[float]]] = {g: {m: [] for m in TRACKED} for g in generations}
    for record in records:
        evaluation = record.evaluation
        outcomes[record.generation][evaluation.failure or "ok"] += 1
        if not (evaluation.ok and evaluation.report is not None):
            continue
        values.append(objective_values(evaluation, objectives))
        value_gen.append(record.generation)
        flat = evaluation.report.flat()
        for metric in TRACKED:
            value = flat.get(metric)
            if value is not None:
                per_gen[record.generation][metric].append(value)
    points = np.array(values, dtype=float).reshape(-1, len(objectives))
    point_generation = np.array(value_gen, dtype=np.int64)
    fronts: dict[int, np.ndarray] = {}
    front = np.empty(0, dtype=np.int64)
    for g in generations:
        candidates = np.r_[front, np.flatnonzero(point_generation == g)].astype(np.int64)
        front = candidates[non_dominated(points[candidates])] if len(candidates) else front
        fronts[g] = front
    tracked: dict[str, dict[str, list[float]]] = {}
    for metric in TRACKED:
        if not any(per_gen[g][metric] for g in generations):
            continue
        best, median, running = [], [], -np.inf
        for g in generations:
            seen = per_gen[g][metric]
            if seen:
                running = max(running, max(seen))
            best.append(running if np.isfinite(running) else np.nan)
            median.append(float(np.median(seen)) if seen else np.nan)
        tracked[metric] = {"best": best, "median": median}
    llm = [(row.gen, row.llm.model_dump()) for row in logbook if row.llm is not None]
    if not any(acc["calls"] or acc["prompt_tokens"] or acc["completion_tokens"] for _, acc in llm):
        llm = []
    data = ReportData(
        files=files,
        generations=generations,
        points=points,
        point_generation=point_generation,
        fronts=fronts,
        tracked=tracked,
        outcomes=outcomes,
        logbook=logbook,
        llm=llm,
        export=None,
    )
    data.export = find_export(files, personas, data.notes)
    if files.skipped_lines:
        for name, count in files.skipped_lines.items():
            data.notes.append(f"{name}: {count} line cut short (the run was interrupted) skipped")
    return data


def find_export(
    files: RunFiles, personas: str | Path | None, notes: list[str]
) -> ExportData | None:
    """The export named by ``personas``, else the run's latest (``exports.jsonl``)."""
    summary_path = None
    if personas is None:
        index = files.path / INDEX
        if not index.is_file():
            return None
        lines = [line for line in index.read_text(encoding="utf-8").splitlines() if line.strip()]
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if Path(entry.get("output", "")).is_file():
                personas, summary_path = entry["output"], Path(entry.get("summary", ""))
                break
        else:
            notes.append(f"{index}: lists no export file that still exists")
            return None
    path = Path(personas)
    if (problem := not_a_file(path, "exported persona file")) is not None:
        raise InputError(f"{path}: {problem} (--personas)")
    summary_path = summary_path or export_paths(path)[1]
    summary = None
    if summary_path.is_file():
        try:
            summary = ExportSummary.model_validate_json(summary_path.read_text(encoding="utf-8"))
        except ValueError as err:
            notes.append(f"{summary_path}: unreadable export summary ({err}); not shown")
    records = read_records(path)
    if not records:
        raise InputError(f"{path}: holds no persona")
    try:
        native = native_of(records, files.space)
    except InputError as err:
        raise InputError(
            f"{path}: does not fit the run's space {files.space.name!r}: {err}"
        ) from None
    rarity = np.array([_number(r.get("rarity")) for r in records])
    rare = np.array([_flag(r.get("rare")) for r in records], dtype=bool)
    return ExportData(path=path, native=native, rarity=rarity, rare=rare, summary=summary)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def metric_label(name: str) -> str:
    """A metric name with its better direction, e.g. ``mc_coverage (higher is better)``."""
    return f"{name} ({ScoreReport.direction(name)} is better)"
