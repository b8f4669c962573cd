"""``export_personas``: from a run directory to a persona file, its dataset card and its
summary.

Stages: open the run (config, space, reference, front programs); sample a pool of
``pool_size`` personas (default ``4 n``) from the front programs in the sandbox, measuring
each chunk with the run's assessor when the run's positions were measured (``assess``
not ``explicit``; :mod:`personaevo.export.measure`), dropping invalid, unmeasured and
duplicate ones; annotate cells, rare cells and combinations and consequential
configurations; select ``n`` (the rows that keep every reached rare and consequential
entry first, then ``maximin``, ``facility`` or ``none``); compute rarity; write the file;
score the exported set and a density-matched sample of the same size; write the card
(``<file>.card.md``) and the summary (``<file>.export.json``) beside the file, and add a
line to the run's ``exports.jsonl`` so that ``personaevo report`` finds the export.
"""

from __future__ import annotations

import json
import resource
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from personaevo.assess import check_assessable
from personaevo.errors import InputError
from personaevo.evaluate import generator_space
from personaevo.export.annotate import (
    annotate,
    consequential_counts,
    rare_counts,
    required_rows,
    unreached_rare,
)
from personaevo.export.card import render_card
from personaevo.export.density import FastRarity
from personaevo.export.measure import PoolMeasure, export_assessor, run_llm
from personaevo.export.models import ExportSummary, Stage
from personaevo.export.pool import Pool, sample_pool
from personaevo.export.records import atomic_write, build_records, format_for, write_records
from personaevo.export.select import METHODS, select
from personaevo.llm.base import ProgramLLM
from personaevo.metrics import score
from personaevo.metrics.novelty import copy_detector
from personaevo.runfiles import open_run
from personaevo.sandbox import Sandbox, SandboxLimits

INDEX = "exports.jsonl"


def export_paths(out: Path) -> tuple[Path, Path]:
    """The card and summary written beside an export file, named by the whole file name
    (``personas.csv`` -> ``personas.csv.card.md``, ``personas.csv.export.json``), so that
    exports of one stem in different formats never share (and overwrite) a card."""
    return out.with_name(out.name + ".card.md"), out.with_name(out.name + ".export.json")


class _Stages:
    """Wall time, CPU time and peak resident memory per stage."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.stages: list[Stage] = []
        self.log = log
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def done(self, name: str, detail: str = "") -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        stage = Stage(
            name=name,
            seconds=round(wall - self._wall, 3),
            cpu_seconds=round(cpu - self._cpu, 3),
            peak_rss_mb=round(peak, 1),
        )
        self.stages.append(stage)
        self._wall, self._cpu = wall, cpu
        self.log(f"{name}: {stage.seconds:.1f} s{'  ' + detail if detail else ''}")


def export_personas(
    run: str | Path,
    n: int = 5000,
    out: str | Path | None = None,
    fmt: str | None = None,
    select_method: str = "maximin",
    seed: int = 0,
    pool_size: int | None = None,
    chunk: int = 2000,
    workers: int = 2,
    timeout: float | None = None,
    tway: int = 2,
    force: bool = False,
    n_probes: int = 10_000,
    assess: str | None = None,
    sandbox: Sandbox | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    drop_copies: bool = False,
    index: bool = True,
) -> ExportSummary:
    """Export ``n`` coverage-optimised personas from the run in ``run``.

    ``out`` defaults to ``RUN/exports/personas-<select>-n<n>-seed<seed>.<fmt>``; its format
    comes from ``fmt`` or its suffix (jsonl, parquet, csv). An existing output, card or
    summary is an :class:`InputError` unless ``force``. Fewer than ``n`` personas are
    exported when the programs cannot give ``n`` distinct valid ones; the summary's
    ``shortfall`` says how many and why. ``timeout`` is the wall and CPU limit of one
    sandbox run (default: the run's ``eval_timeout``). ``assess`` (``explicit``,
    ``embedding``, ``questionnaire``) says how positions are read; by default as the run
    read them (its ``assess``): anything but ``explicit`` measures every pooled persona's
    text, and the measured positions are exported, with the declared ones kept as
    ``declared_traits``. With a reference, every record says whether it copies a
    respondent (``copy_of_respondent``, :mod:`personaevo.metrics.novelty`); with
    ``drop_copies`` such personas are removed from the pool before selection. With
    ``index`` (the default) the export is listed in the run's ``exports.jsonl``; without
    it the run directory is left as it was (the simulator trainer's exports)."""
    say = log or (lambda line: None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--n: expected a positive number of personas, got {n!r}")
    if select_method not in METHODS:
        raise InputError(f"--select: unknown method {select_method!r} (use {', '.join(METHODS)})")
    if chunk < 1 or workers < 1:
        raise InputError("--chunk and --workers must be at least 1")
    stages = _Stages(say)
    files = open_run(run)
    fmt = fmt if out is not None else (fmt or "jsonl")
    out_path = (
        Path(out)
        if out is not None
        else files.path / "exports" / f"personas-{select_method}-n{n}-seed{seed}.{fmt}"
    )
    fmt = format_for(out_path, fmt)
    card_path, summary_path = export_paths(out_path)
    existing = [p for p in (out_path, card_path, summary_path) if p.exists()]
    if existing and not force:
        raise InputError(
            f"{existing[0]}: already exists; use --force to overwrite it, or another --out"
        )
    space, reference = files.space, files.reference
    pool_size = max(pool_size or 4 * n, n)
    method = assess or files.config.assess
    check_assessable(space, method)
    llm = run_llm(files, method)
    assessor = export_assessor(files, method, llm)
    measure = PoolMeasure(assessor, space) if assessor is not None else None
    read = "declared traits" if measure is None else f"measured by {method}"
    stages.done("open run", f"{files.path}: {len(files.front)} front programs; positions: {read}")

    # the run's time policy: wall limit per run, CPU budget per persona of each chunk
    limits = SandboxLimits(wall_seconds=timeout or files.config.eval_timeout)
    pool = sample_pool(
        files.front,
        generator_space(space, reference, seed=files.config.seed),
        space,
        pool_size,
        seed=seed,
        chunk=chunk,
        sandbox=sandbox,
        workers=workers,
        limits=limits,
        llm=ProgramLLM(llm, files.config.llm.sampling) if files.config.llm is not None else None,
        progress=say,
        measure=measure,
        cpu_ms_per_persona=files.config.eval_cpu_ms_per_persona,
    )
    if llm is not None:
        llm.close()
    assessment = measure.summary() if measure is not None else None
    measured = (
        f" ({assessment.measured:,} of {assessment.personas:,} measured by {method} in "
        f"{assessment.seconds:.1f} s)"
        if assessment
        else ""
    )
    stages.done("sample pool", f"{len(pool):,} distinct valid personas{measured}")
    if len(pool) == 0:
        raise InputError(f"{files.path}: the front programs gave no valid persona: {_why(pool)}")
    copies = (
        copy_detector(reference).is_copy(space.grid.unit(pool.native))
        if reference is not None
        else None
    )
    copies_dropped = 0
    if drop_copies and copies is not None and copies.any():
        copies_dropped = int(copies.sum())
        pool, copies = pool.take(~copies), copies[~copies]
        stages.done("drop copies", f"{copies_dropped:,} copies of respondents dropped")
        if len(pool) == 0:
            raise InputError(
                f"{files.path}: every persona the front programs gave copies a respondent"
            )

    notes = annotate(space, pool.native, reference, tway)
    stages.done("annotate")
    k = min(n, len(pool))
    required, tiers = required_rows(notes, k)
    rng = np.random.default_rng([seed, 0xE5])
    chosen = select(space.grid.unit(pool.native), k, select_method, rng, required)  # type: ignore[arg-type]
    stages.done("select", f"{len(chosen):,} of {len(pool):,} ({len(required):,} kept first)")

    rarity = (
        FastRarity(reference).rarity(space.grid.unit(pool.native[chosen])) if reference else None
    )
    stages.done("rarity")
    is_required = np.zeros(len(pool), dtype=bool)
    is_required[required] = True
    chosen_copies = copies[chosen] if copies is not None else None
    records = build_records(
        pool, chosen, notes.rows(chosen), rarity, is_required[chosen], chosen_copies
    )
    write_records(out_path, records, fmt)
    stages.done("write", str(out_path))

    def scored(population: list[dict[str, Any]]):
        return score(population, space, reference=reference, seed=seed, n_probes=n_probes)

    exported_report = scored([{"id": r["id"], "traits": r["traits"]} for r in records])
    baseline_notes, baseline_report = None, None
    if reference is not None:
        baseline = reference.sample(len(chosen), np.random.default_rng([seed, 0xDE]))
        traits = space.grid.to_traits(baseline)
        baseline_report = scored([{"id": f"d{i}", "traits": t} for i, t in enumerate(traits)])
        baseline_notes = annotate(space, baseline, reference, tway)
    stages.done("score", "exported set and density-matched sample")

    exported_per_program = np.bincount(pool.program[chosen], minlength=len(pool.yields))
    for y, count in zip(pool.yields, exported_per_program, strict=True):
        y.exported = int(count)
    chosen_notes = notes.rows(chosen)
    unreached, kind = (
        unreached_rare(space, reference, chosen_notes, tway) if reference else ([], "")
    )
    summary = ExportSummary(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        run=str(files.path),
        output=str(out_path),
        card=str(card_path),
        format=fmt,
        space=space.name,
        space_version=space.version,
        space_context=space.context,
        reference=reference.summary.source if reference else None,
        reference_respondents=len(reference.native) if reference else None,
        rare_mass_fraction=reference.rare_mass_fraction if reference else None,
        requested=n,
        exported=len(chosen),
        pool_requested=pool.requested,
        pool=len(pool),
        select=select_method,
        seed=seed,
        chunk=chunk,
        tway=tway,
        assess=method,
        assessment=assessment,
        shortfall=_shortfall(n, pool) if len(pool) < n else None,
        copies=int(chosen_copies.sum()) if chosen_copies is not None else 0,
        copies_dropped=copies_dropped,
        programs=pool.yields,
        required=tiers,
        rare=rare_counts(reference, notes, chosen_notes, baseline_notes, tway),
        consequential=consequential_counts(space, notes, chosen_notes, baseline_notes),
        unreached_rare_kind=kind,
        unreached_rare=unreached,
        exported_metrics=exported_report,
        density_matched_metrics=baseline_report,
        sandbox_max_rss_mb=max((y.max_rss_mb or 0.0 for y in pool.yields), default=None),
        notes=_notes(tiers, pool, k),
    )
    stages.done("card")
    summary.stages = stages.stages
    if command is None:
        command = (
            f"personaevo export --run {shlex.quote(str(files.path))} --n {n} "
            f"--out {shlex.quote(str(out_path))} --select {select_method} --seed {seed} "
            f"--pool {pool_size} --chunk {chunk}"
        ) + (f" --assess {method}" if assess is not None or method != "explicit" else "")
    atomic_write(card_path, lambda tmp: tmp.write_text(render_card(summary, command), "utf-8"))
    atomic_write(summary_path, lambda tmp: tmp.write_text(summary.model_dump_json(indent=1)))
    if index:
        _add_to_index(files.path, summary, summary_path, say)
    if summary.shortfall:
        say(f"exported {len(chosen):,} of {n:,} asked for: {summary.shortfall}")
    return summary


def _why(pool: Pool) -> str:
    """Why the programs gave no more: invalid reasons, duplicates, failed runs."""
    parts = []
    invalid = sum(y.invalid for y in pool.yields)
    if invalid:
        reasons: dict[str, int] = {}
        for y in pool.yields:
            for reason, count in y.invalid_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        top = ", ".join(f"{r}: {c:,}" for r, c in sorted(reasons.items(), key=lambda x: -x[1])[:4])
        parts.append(f"{invalid:,} invalid ({top})")
    duplicates = sum(y.duplicates for y in pool.yields)
    if duplicates:
        parts.append(f"{duplicates:,} duplicates of personas already in the pool")
    failed = [
        f"{y.name} failed {sum(y.failures.values())} of {y.runs} runs "
        f"({', '.join(y.failures)}{': ' + y.messages[0] if y.messages else ''})"
        for y in pool.yields
        if y.failures
    ]
    parts += failed
    short = [y.name for y in pool.yields if not y.failures and y.returned < y.requested]
    if short:
        parts.append(f"{', '.join(short)} returned fewer personas than asked")
    return "; ".join(parts) or "the programs returned nothing"


def _shortfall(n: int, pool: Pool) -> str:
    return (
        f"the {len(pool.yields)} front programs gave {len(pool):,} distinct valid personas "
        f"for {pool.requested:,} asked for, fewer than the {n:,} wanted, so all "
        f"{len(pool):,} are exported. Why: {_why(pool)}"
    )


def _notes(tiers: dict, pool: Pool, k: int) -> list[str]:
    notes = []
    lost = {name: c.reached - c.kept for name, c in tiers.items() if c.reached > c.kept}
    if lost:
        detail = ", ".join(f"{v:,} {name}s" for name, v in lost.items())
        notes.append(
            f"{k:,} personas are too few to keep one for every rare and consequential entry "
            f"the pool reached: {detail} have none (ask for more with --n)"
        )
    if pool.extra_keys:
        keys = ", ".join(sorted(pool.extra_keys))
        notes.append(f"persona fields the programs wrote that are not exported: {keys}")
    return notes


def _add_to_index(run: Path, summary: ExportSummary, path: Path, say) -> None:
    """Add the export to ``RUN/exports.jsonl`` (the report reads its last line)."""
    line = {
        "created": summary.created,
        "output": str(Path(summary.output).resolve()),
        "summary": str(path.resolve()),
        "exported": summary.exported,
        "select": summary.select,
        "seed": summary.seed,
        "format": summary.format,
    }
    try:
        with (run / INDEX).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    except OSError as err:
        say(f"note: could not record the export in {run / INDEX}: {err}")
