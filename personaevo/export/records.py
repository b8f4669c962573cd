"""Exported persona records and their files (JSONL, Parquet, CSV).

One record per persona::

    id                 "<space>-000001", in selection order
    traits             {axis: value}: the positions (measured, when the export measured)
    declared_traits    {axis: value} the program declared (only when positions are measured)
    description        text or null
    profile            JSON text of the program's profile facts, or null
    rarity             share of reference respondents in denser places (1 = rarest), or null
    copy_of_respondent whether it copies a reference respondent (metrics.novelty), or null
    cell               the cell id, e.g. "age=[16,30.8)|employment=student|..."
    rare               in a rare cell or with a rare combination
    rare_cell          in one of the reference's rare cells
    rare_combinations  the rare t-way combinations it has, e.g. ["age=[13,25.8) & ..."]
    consequential      names of the consequential configurations it is in
    required           kept to represent a rare or consequential cell (see annotate)
    provenance         {generator, program_hash, seed, n, source_id}: run the program with
                       this seed and n to get it again; source_id is the id it gave
    space, space_version

The JSONL file is also a persona file (``personaevo score-personas`` reads it). Parquet
keeps the nesting; CSV flattens it into ``traits.<axis>`` and ``provenance.<key>``
columns, with the lists as JSON text. Files are written to a temporary name and renamed,
so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from personaevo.errors import InputError, not_a_file
from personaevo.export.annotate import Annotations, bin_label
from personaevo.export.pool import Pool
from personaevo.spaces import ContinuousAxis, TraitSpace

FORMATS: tuple[str, ...] = ("jsonl", "parquet", "csv")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}


def format_for(path: Path, fmt: str | None) -> str:
    """The file format: ``fmt`` when given (it must match a known suffix of ``path``, if
    any), else the one ``path``'s suffix names."""
    by_suffix = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        if by_suffix is None:
            raise InputError(
                f"{path}: cannot tell the format from the suffix; use .jsonl, .parquet or "
                ".csv, or --format"
            )
        return by_suffix
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    if by_suffix is not None and by_suffix != fmt:
        raise InputError(f"{path}: the suffix says {by_suffix} but the format asked is {fmt}")
    return fmt


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_records(path: Path, records: list[dict[str, Any]], fmt: str) -> None:
    """Write records in ``fmt`` (atomically)."""
    if fmt == "jsonl":

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False))
                    handle.write("\n")

    elif fmt == "parquet":

        def write(tmp: Path) -> None:
            pq.write_table(_arrow_table(records), tmp)

    else:

        def write(tmp: Path) -> None:
            flat_frame(records).to_csv(tmp, index=False)

    atomic_write(path, write)


def _arrow_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records as an Arrow table. Declared traits are not checked against the space when
    positions are measured, so an axis may hold values of several types; then
    ``declared_traits`` is stored as JSON text (and decoded by :func:`read_records`)."""
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if not records or "declared_traits" not in records[0]:
            raise
    return pa.Table.from_pylist(
        [{**r, "declared_traits": json.dumps(r["declared_traits"])} for r in records]
    )


def flat_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as one flat table: nested mappings become ``parent.key`` columns and
    lists JSON text."""
    frame = pd.json_normalize(records, sep=".")
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = frame[column].map(json.dumps)
    return frame


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read exported records back from any of the formats (nesting restored for CSV)."""
    path = Path(path)
    if (problem := not_a_file(path, "exported persona file")) is not None:
        raise InputError(f"{path}: {problem}")
    fmt = format_for(path, None)
    try:
        if fmt == "jsonl":
            with path.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        if fmt == "parquet":
            rows = pq.read_table(path).to_pylist()
            for row in rows:
                if isinstance(row.get("declared_traits"), str):
                    row["declared_traits"] = json.loads(row["declared_traits"])
            return rows
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise InputError(f"{path}: cannot read the exported personas: {err}") from None
    return [_unflatten(row) for row in frame.to_dict(orient="records")]


def _unflatten(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float) and np.isnan(value):
            value = None
        parent, _, child = key.partition(".")
        if child:
            out.setdefault(parent, {})[child] = value
        else:
            out[key] = value
    return out


def native_of(records: list[dict[str, Any]], space: TraitSpace) -> np.ndarray:
    """Native matrix of records' traits. Values read from CSV arrive as text and are
    matched to the axis's values by their text; anything unknown raises InputError."""
    V = np.empty((len(records), space.dim))
    for j, axis in enumerate(space.axes):
        if isinstance(axis, ContinuousAxis):
            try:
                V[:, j] = [float(r["traits"][axis.name]) for r in records]
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"exported personas: axis {axis.name!r}: {err}") from None
            continue
        by_text = {str(v): i for i, v in enumerate(axis.values)}
        for i, record in enumerate(records):
            value = record["traits"].get(axis.name)
            index = axis.index(value)
            if index is None:
                index = by_text.get(str(value))
            if index is None:
                raise InputError(
                    f"exported personas: record {record.get('id')!r}: {axis.name}: "
                    f"unknown value {value!r}"
                )
            V[i, j] = index
    return V


def parse_lists(records: list[dict[str, Any]], key: str) -> list[list[str]]:
    """A list field of each record (decoded from JSON text when read from CSV)."""
    out = []
    for record in records:
        value = record.get(key)
        if isinstance(value, str):
            value = json.loads(value)
        out.append(list(value or []))
    return out


def build_records(
    pool: Pool,
    chosen: np.ndarray,
    notes: Annotations,
    rarity: np.ndarray | None,
    required: np.ndarray,
    copies: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The exported records of the ``chosen`` pool rows (see :mod:`.records`);
    ``copies`` flags the chosen rows that copy a respondent (None without a reference)."""
    space = pool.space
    grid = space.grid
    native = pool.native[chosen]
    traits = grid.to_traits(native)
    labels = [[bin_label(axis, b) for b in range(axis.n_bins)] for axis in space.axes]
    combos: list[list[str]] = [[] for _ in chosen]
    for axes, keys, hit in notes.combos:
        named: dict[int, str] = {}  # rare combinations are few: name each once
        for i in np.flatnonzero(hit).tolist():
            key = int(keys[i])
            if key not in named:
                named[key] = " & ".join(labels[j][int(notes.bins[i, j])] for j in axes)
            combos[i].append(named[key])
    columns = [[labels[j][b] for b in notes.bins[:, j].tolist()] for j in range(space.dim)]
    cells = ["|".join(parts) for parts in zip(*columns, strict=True)]
    names = [c.name for c in space.consequential]
    rare_any = notes.rare_any
    width = max(6, len(str(len(chosen))))
    records = []
    for i, row in enumerate(chosen.tolist()):
        y = pool.yields[int(pool.program[row])]
        positions: dict[str, Any] = {"traits": traits[i]}
        if pool.declared is not None:
            positions["declared_traits"] = json.loads(pool.declared[row])
        records.append(
            {
                "id": f"{space.name}-{i + 1:0{width}d}",
                **positions,
                "description": pool.description[row],
                "profile": pool.profile[row],
                "rarity": None if rarity is None else round(float(rarity[i]), 6),
                "copy_of_respondent": None if copies is None else bool(copies[i]),
                "cell": cells[i],
                "rare": bool(rare_any[i]),
                "rare_cell": bool(notes.rare_cell[i]),
                "rare_combinations": combos[i],
                "consequential": [
                    names[c] for c in np.flatnonzero(notes.consequential[i]).tolist()
                ],
                "required": bool(required[i]),
                "provenance": {
                    "generator": y.name,
                    "program_hash": y.program_hash,
                    "seed": int(pool.seed[row]),
                    "n": int(pool.chunk[row]),
                    "source_id": pool.source_id[row],
                },
                "space": space.name,
                "space_version": space.version,
            }
        )
    return records
