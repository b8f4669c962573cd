"""What a run directory holds, but timings: two runs that computed the same thing
compare equal (checkpoint with RNG state and islands, every evaluation in order,
logbook, front and program files byte for byte, LLM accounting)."""

from __future__ import annotations

import json
from pathlib import Path

VOLATILE = {"time", "run_seconds", "seconds"}


def strip_timings(value):
    """``value`` without its timing fields, at any depth."""
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


def _jsonl(path: Path) -> list:
    return [strip_timings(json.loads(line)) for line in path.read_text().splitlines()]


def run_state(path: Path) -> dict:
    """Everything a finished run directory holds, but timings."""
    return {
        "checkpoint": strip_timings(json.loads((path / "checkpoint.json").read_text())),
        "evaluations": _jsonl(path / "evaluations.jsonl"),
        "logbook": _jsonl(path / "logbook.jsonl"),
        "journal": (path / "journal.jsonl").read_text(),
        "front": {p.name: p.read_bytes() for p in sorted((path / "front").glob("*.py"))},
        "programs": {p.name: p.read_bytes() for p in sorted((path / "programs").iterdir())},
        "llm_usage": strip_timings(json.loads((path / "llm_usage.json").read_text())),
    }


def file_bytes(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (links as their targets), by relative path."""
    found = {}
    for file in sorted(path.rglob("*")):
        if file.is_symlink():
            found[str(file.relative_to(path))] = f"-> {file.readlink()}".encode()
        elif file.is_file():
            found[str(file.relative_to(path))] = file.read_bytes()
    return found
