"""Host side: strict parsing of the child's result, persona validation, failure kinds."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from personaevo.sandbox.models import (
    CHILD_REPORTED_KINDS,
    FailureKind,
    SandboxLimits,
    Validator,
)

MAX_PROBLEMS = 50
_MEMORY_SIGNALS = {signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}


PARSE_COST_FACTOR = 6
"""Parsing a result may cost the host at most this many times the bytes written (by
:func:`parse_cost_bound`)... Compact JSON personas cost CPython 3.7-4x their bytes once
parsed (and ~5x at the peak, with the decoded text), so 6 passes every real program's
output while a flood of small values (24x and more) is refused before it is parsed."""
PARSE_COST_FLOOR = 16 << 20
"""... plus this much (so that small results, whatever their shape, always parse)."""


def parse_cost_bound(data: bytes | bytearray) -> int:
    """An upper estimate of the host memory (bytes) that ``json.loads(data)`` would take,
    from byte counts alone (C speed, nothing is built): every ``{`` a dict (72 bytes with
    its slot in the parent), every ``[`` a list (64), every ``,`` one more value (40: a
    float or an int object and its slot), every string that is not a key (``"``'s not
    followed by ``:``) a str object (56), and the text itself. Brackets and commas inside
    strings are counted too, so this errs on the high side. Measured on the seed
    generators' output: about 3.6x their bytes, against a real cost of 3.7x; a list of
    empty dicts (the "dict bomb") estimates 38x, its real cost 24x; a realistic persona
    with floats, short strings and a sentence estimates 5.0x for a real 3.9x."""
    quotes = data.count(b'"')
    keys = data.count(b'":') + data.count(b'" :')
    value_strings = max(0, quotes // 2 - keys)
    return (
        len(data)
        + 72 * data.count(b"{")
        + 64 * data.count(b"[")
        + 40 * data.count(b",")
        + 56 * value_strings
    )


def parse_budget(size: int) -> int:
    """The most host memory a result of ``size`` bytes may cost to parse."""
    return PARSE_COST_FACTOR * size + PARSE_COST_FLOOR


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not JSON")


def parse_strict(data: bytes) -> Any:
    """Parse JSON, rejecting NaN/Infinity; raises ValueError (or RecursionError)."""
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def validate_personas(
    personas: list[Any], validator: Validator | None
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Split ``personas`` into valid ones; return (valid, number invalid, problems).

    A persona is a dict with an ``id`` (str or int, unique) and a dict ``traits``;
    ``description``, when present, is a str. ``validator`` (host-side, caller supplied)
    is then called with ``[persona]`` for each structurally valid persona; any problem it
    returns makes that persona invalid. Exceptions from the validator propagate.
    """
    valid: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[Any] = set()
    for index, persona in enumerate(personas):
        found = _structure_problems(persona, seen)
        if not found and validator is not None:
            found = [str(p) for p in validator([persona])]
        if found:
            label = f"persona {index}"
            if isinstance(persona, dict) and isinstance(persona.get("id"), str | int):
                label += f" (id={persona['id']!r})"
            problems.extend(f"{label}: {p}" for p in found)
        else:
            seen.add(persona["id"])
            valid.append(persona)
    return valid, len(personas) - len(valid), problems[:MAX_PROBLEMS]


def _structure_problems(persona: Any, seen: set[Any]) -> list[str]:
    if not isinstance(persona, dict):
        return [f"is a {type(persona).__name__}, not a dict"]
    found = []
    pid = persona.get("id")
    if "id" not in persona:
        found.append("missing 'id'")
    elif isinstance(pid, bool) or not isinstance(pid, str | int):
        found.append(f"'id' must be a str or int, not {type(pid).__name__}")
    elif pid in seen:
        found.append(f"duplicate id {pid!r}")
    if not isinstance(persona.get("traits"), dict):
        found.append("'traits' must be a dict" if "traits" in persona else "missing 'traits'")
    description = persona.get("description")
    if description is not None and not isinstance(description, str):
        found.append("'description' must be a str")
    return found


@dataclass
class Outcome:
    """Everything the host observed about one run, before classification."""

    result: bytes | bytearray = b""
    output_too_large: bool = False
    timed_out: bool = False
    worker_died: bool = False
    worker_unresponsive: bool = False
    done: dict[str, Any] | None = None
    llm_error: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Classification of an :class:`Outcome`."""

    failure: FailureKind | None
    message: str = ""
    traceback: str = ""
    personas: list[dict[str, Any]] = field(default_factory=list)
    n_invalid: int = 0
    n_returned: int | None = None
    problems: list[str] = field(default_factory=list)
    program_seconds: float | None = None
    exit_code: int | None = None
    signal: str | None = None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(
    outcome: Outcome, limits: SandboxLimits, n: int, validator: Validator | None
) -> Verdict:
    """Decide the failure kind (or success) of a run from what the host observed."""
    status = outcome.done["status"] if outcome.done else None
    exit_code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
    signum = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
    sig = _signal_name(signum) if signum is not None else None

    doc: Any = None
    parse_error = ""
    too_costly = ""
    if outcome.result and not outcome.output_too_large:
        cost, budget = parse_cost_bound(outcome.result), parse_budget(len(outcome.result))
        if cost > budget:
            too_costly = (
                f"the result ({len(outcome.result):,} bytes) would take about "
                f"{cost / (1 << 20):,.0f} MB to parse in the host, over the "
                f"{budget / (1 << 20):,.0f} MB allowed ({PARSE_COST_FACTOR}x its size + "
                f"{PARSE_COST_FLOOR >> 20} MB): too many small values"
            )
    if outcome.result and not outcome.output_too_large and not too_costly:
        try:
            doc = parse_strict(outcome.result)
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            parse_error = f"{type(exc).__name__}: {exc}"[:300]
    if doc is not None and not (isinstance(doc, dict) and doc.get("status") in {"ok", "error"}):
        parse_error, doc = "result document has an unexpected shape", None
    seconds = doc.get("program_seconds") if isinstance(doc, dict) else None
    seconds = float(seconds) if isinstance(seconds, int | float) else None
    base = {"exit_code": exit_code, "signal": sig, "program_seconds": seconds}

    def fail(kind: FailureKind, message: str, tb: str = "") -> Verdict:
        return Verdict(failure=kind, message=message, traceback=tb, **base)

    finished = doc is not None and exit_code == 0
    if outcome.done is not None and outcome.done.get("error"):
        return fail(FailureKind.SANDBOX_ERROR, str(outcome.done["error"]))
    if outcome.worker_died:
        return fail(
            FailureKind.CRASHED,
            "the sandbox worker died during the run (the program killed it, or it was killed)",
        )
    if outcome.output_too_large:
        return fail(
            FailureKind.OUTPUT_TOO_LARGE, f"result exceeded the {limits.output_mb} MB output limit"
        )
    if too_costly and not outcome.timed_out:
        return fail(FailureKind.OUTPUT_TOO_LARGE, too_costly)
    if outcome.timed_out and not finished:
        return fail(FailureKind.TIMEOUT, f"wall-clock limit of {limits.wall_seconds:g}s exceeded")
    if doc is not None and doc["status"] == "error":
        try:
            kind = FailureKind(doc.get("kind"))
        except ValueError:
            kind = FailureKind.CRASHED
        if kind not in CHILD_REPORTED_KINDS:
            kind = FailureKind.CRASHED
        return fail(kind, str(doc.get("message", ""))[:2000], str(doc.get("traceback", ""))[:20000])
    if doc is not None:
        personas = doc.get("personas")
        if not isinstance(personas, list):
            return fail(FailureKind.INVALID_PERSONAS, "result holds no list of personas")
        if len(personas) > n:
            verdict = fail(
                FailureKind.WRONG_COUNT,
                f"returned {len(personas)} personas for n={n}: a program must return "
                f"exactly n (more are never scored)",
            )
            verdict.n_returned = len(personas)
            return verdict
        valid, n_invalid, problems = validate_personas(personas, validator)
        if len(personas) < n:
            problems.append(
                f"returned {len(personas)} personas for n={n}: the {n - len(personas)} "
                "missing count as invalid"
            )
        if not valid and (n > 0 or personas):
            what = "no personas" if not personas else f"all {len(personas)} personas invalid"
            verdict = fail(FailureKind.INVALID_PERSONAS, what)
            verdict.n_invalid, verdict.problems = n_invalid, problems
            verdict.n_returned = len(personas)
            return verdict
        return Verdict(
            failure=None,
            personas=valid,
            n_invalid=n_invalid,
            n_returned=len(personas),
            problems=problems,
            **base,
        )
    cpu = float(outcome.done.get("cpu", 0.0)) if outcome.done else 0.0
    rss_mb = float(outcome.done.get("maxrss_kb", 0)) / 1024 if outcome.done else 0.0
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu >= limits.cpu_seconds):
        return fail(FailureKind.TIMEOUT, f"CPU-time limit of {limits.cpu_seconds:g}s exceeded")
    if signum in _MEMORY_SIGNALS and rss_mb >= 0.8 * limits.memory_mb:
        return fail(
            FailureKind.MEMORY,
            f"killed by {sig} at {rss_mb:.0f} MB resident, near the memory limit",
        )
    if outcome.worker_unresponsive:
        return fail(FailureKind.SANDBOX_ERROR, "the sandbox worker stopped responding")
    if sig is not None:
        return fail(FailureKind.CRASHED, f"killed by {sig} without producing output")
    if parse_error:
        return fail(FailureKind.INVALID_PERSONAS, f"result is not valid JSON: {parse_error}")
    code = "unknown" if exit_code is None else exit_code
    return fail(
        FailureKind.CRASHED, f"exited with status {code} without producing output (os._exit?)"
    )
