"""Errors raised for bad input: each names what is wrong and where.

The CLI turns any :class:`InputError` into its message on stderr and exit code 2,
with no traceback.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path


class InputError(Exception):
    """A user-supplied file or value is wrong. ``str(err)`` is the full, readable message."""


class FileFieldError(InputError):
    """A problem at one field of one file: ``FILE: FIELD: REASON``."""

    def __init__(self, path: str | Path, field: str, reason: str) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.path}: {field}: {reason}")


def not_a_file(path: str | Path, what: str) -> str | None:
    """Why ``path`` cannot be read as a ``what`` (e.g. "table"): ``"is a directory, not a
    table"``, ``"no such table"``, or ``None`` when it is a regular file."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        article = "an" if what[:1].lower() in "aeiou" else "a"
        return f"is a directory, not {article} {what}"
    return f"no such {what}"


def refuse_duplicate_ids(path: str | Path, ids: list[str], what: str) -> None:
    """A :class:`FileFieldError` at ``id`` naming the ids that occur more than once in
    ``path`` (``what``: the kind of record, e.g. "goal")."""
    counts = Counter(ids)
    duplicates = sorted(i for i, c in counts.items() if c > 1)
    if duplicates:
        raise FileFieldError(path, "id", f"duplicate {what} ids {duplicates}")


class FileFieldsError(InputError):
    """Several field problems in one file, reported together."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {field}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))
