"""Reading a language model's edit of a program: SEARCH/REPLACE blocks or a full rewrite.

A diff reply holds one or more blocks (the AlphaEvolve / OpenEvolve format)::

    <<<<<<< SEARCH
    lines copied exactly from the program
    =======
    the lines that replace them
    >>>>>>> REPLACE

Blocks apply in order, each to the text the previous ones left. A SEARCH text is a run
of whole lines that must occur *exactly once*, character for character (indentation and
trailing spaces included; only ``\r\n`` line endings are normalised): one that does not
occur is a :class:`PatchError` of kind ``no_match``, one that occurs several times is
``ambiguous`` -- never a silent no-op. A rewrite reply holds the whole program in a
fenced code block.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

PatchErrorKind = Literal["bad_format", "no_match", "ambiguous"]

_SEARCH = re.compile(r"^\s*<{5,}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,}\s*$")
_REPLACE = re.compile(r"^\s*>{5,}\s*REPLACE\s*$")
_FENCE = re.compile(r"^```[ \t]*([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


class PatchError(ValueError):
    """A reply that cannot be applied; ``kind`` says why (it names the outcome counted)."""

    def __init__(self, kind: PatchErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: PatchErrorKind = kind


def parse_blocks(reply: str) -> list[tuple[str, str]]:
    """The ``(search, replace)`` pairs of a diff reply, in order.

    Raises :class:`PatchError` (``bad_format``) when there is no block, a block is not
    closed, or a SEARCH text is empty."""
    lines = reply.replace("\r\n", "\n").split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            if _DIVIDER.match(lines[i]) or _REPLACE.match(lines[i]):
                raise PatchError(
                    "bad_format", f"line {i + 1}: '{lines[i].strip()}' outside a SEARCH block"
                )
            i += 1
            continue
        start = i + 1
        divider = _find(lines, start, _DIVIDER)
        if divider is None:
            raise PatchError(
                "bad_format", f"block {len(blocks) + 1}: SEARCH without a '=======' line"
            )
        end = _find(lines, divider + 1, _REPLACE)
        if end is None:
            raise PatchError(
                "bad_format", f"block {len(blocks) + 1}: no '>>>>>>> REPLACE' line after '======='"
            )
        search = "\n".join(lines[start:divider])
        if not search.strip():
            raise PatchError("bad_format", f"block {len(blocks) + 1}: the SEARCH text is empty")
        blocks.append((search, "\n".join(lines[divider + 1 : end])))
        i = end + 1
    if not blocks:
        raise PatchError(
            "bad_format",
            "no SEARCH/REPLACE block found (expected '<<<<<<< SEARCH', '=======', "
            "'>>>>>>> REPLACE' lines)",
        )
    return blocks


def _find(lines: list[str], start: int, pattern: re.Pattern[str]) -> int | None:
    for j in range(start, len(lines)):
        if _SEARCH.match(lines[j]):
            return None  # the next block starts before this one closed
        if pattern.match(lines[j]):
            return j
    return None


def apply_blocks(source: str, blocks: list[tuple[str, str]]) -> str:
    """``source`` with every block applied in order (see the module docstring)."""
    lines = source.replace("\r\n", "\n").split("\n")
    for number, (search, replace) in enumerate(blocks, start=1):
        wanted = search.split("\n")
        k = len(wanted)
        at = [i for i in range(len(lines) - k + 1) if lines[i : i + k] == wanted]
        if not at:
            raise PatchError("no_match", _no_match_message(number, search, lines))
        if len(at) > 1:
            raise PatchError(
                "ambiguous",
                f"SEARCH block {number} occurs {len(at)} times in the program; include more "
                "surrounding lines so that it occurs exactly once",
            )
        lines[at[0] : at[0] + k] = replace.split("\n")
    return "\n".join(lines)


def _no_match_message(number: int, search: str, lines: list[str]) -> str:
    first = next((line for line in search.split("\n") if line.strip()), "")
    message = (
        f"SEARCH block {number} does not match the program exactly (its first line is {first!r})"
    )
    close = difflib.get_close_matches(first, lines, n=1, cutoff=0.6)
    if close:
        message += f"; the closest program line is {close[0]!r}"
    return message + ". Copy SEARCH lines character for character, indentation included"


def extract_program(reply: str) -> str:
    """The program in a rewrite reply: the first fenced block that defines ``generate``
    (a ``python`` block preferred). Raises :class:`PatchError` (``bad_format``)."""
    fences = [(lang.lower(), body) for lang, body in _FENCE.findall(reply.replace("\r\n", "\n"))]
    fences = [f for f in fences if "def generate" in f[1]]
    if not fences:
        raise PatchError(
            "bad_format",
            "no fenced code block (```python ... ```) defining generate(space, n, rng, "
            "llm=None) found",
        )
    python = [body for lang, body in fences if lang in ("python", "py", "python3")]
    return (python or [fences[0][1]])[0]


def apply_reply(source: str, reply: str, rewrite: bool) -> str:
    """The child's source from a reply: a full rewrite when ``rewrite``, otherwise the
    parent with the reply's SEARCH/REPLACE blocks applied."""
    if rewrite:
        return extract_program(reply)
    return apply_blocks(source, parse_blocks(reply))
