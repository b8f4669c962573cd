"""Errors raised for bad input: each names what is wrong and where.

The CLI turns any :class:`InputError` into its message on stderr and exit code 2,
with no traceback.
"""

from __future__ import annotations

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


class FileFieldsError(InputError):
    """Several field problems in one file, reported together."""

    def __init__(self, path: str | Path, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {field}: {reason}" for field, reason in problems]
        super().__init__("\n".join(lines))
