"""Measured positions for an export: the pool is placed where the run's assessor puts it.

A run evolved with ``assess: embedding`` or ``questionnaire`` scored every program by
the positions its personas' *text* measures at, not by the ``traits`` the program
declared. An export of such a run measures each pooled chunk with the same assessor
(:func:`personaevo.assess.make_assessor`; for ``questionnaire`` the run's language model,
else the default one), so that duplicates, selection, rarity, cells and the card's
metrics all use the measured positions. Each kept record keeps what the program wrote as
``declared_traits``. A persona the assessor cannot measure is dropped and counted with
reason ``unmeasured: <kind>`` (``malformed`` for a record that is not a persona).

Measurement is deterministic: a chunk is measured in one batched ``measure`` call seeded
with the chunk's seed (:func:`personaevo.export.pool.chunk_seed`), so the same programs,
sizes and seed give the same pool whatever the number of sandbox workers.

The per-chunk :class:`~personaevo.assess.AssessmentSummary` are merged into one: counts
and seconds are summed, ``parse_rate`` is ``parsed / answers`` over all chunks, and
``mean_relevance`` (embedding) is the mean over all measured personas.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from personaevo.assess import AssessmentSummary, Assessor, check_assessable, make_assessor
from personaevo.llm.base import LLM, Message, SamplingParams
from personaevo.runfiles import RunFiles
from personaevo.spaces import TraitSpace

_SUMMED = ("sentences", "answers", "parsed")


class SerialLLM(LLM):
    """One language model shared by the sandboxed programs and the assessor, one call at a
    time (the programs' proxy calls and the driver's measurement run in different
    threads; an in-process model is not made to serve both at once)."""

    def __init__(self, inner: LLM) -> None:
        super().__init__()
        self.inner = inner
        self.name = getattr(inner, "name", "llm")
        self._lock = threading.Lock()

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        with self._lock:
            return self.inner.chat(conversations, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        with self._lock:
            return self.inner.complete(prompts, params)

    def close(self) -> None:
        self.inner.close()


def run_llm(files: RunFiles, method: str) -> LLM | None:
    """The language model of an export: None when neither the programs (the run's
    ``llm``) nor the assessment need one. For ``questionnaire`` it is built now (a bad
    model spec fails before any work; the default model when the run had none) and
    serialised, since the programs may share it; otherwise built on the programs' first
    call."""
    config = files.config.llm
    if method == "questionnaire":
        from personaevo.llm.config import LLMConfig
        from personaevo.llm.factory import build_llm

        return SerialLLM(build_llm(config or LLMConfig()))
    if config is None:
        return None
    from personaevo.evolution.evaluator import LazyLLM

    return LazyLLM(config)


class PoolMeasure:
    """Measures pooled chunks with one assessor and keeps the merged summary."""

    def __init__(self, assessor: Assessor, space: TraitSpace) -> None:
        self.assessor = assessor
        self.space = space
        self.method = assessor.method
        self._summaries: list[AssessmentSummary] = []

    def __call__(
        self, personas: list[dict[str, Any]], seed: int
    ) -> tuple[list[dict[str, Any]], Counter]:
        """The measured records of a chunk (``traits`` measured, ``declared_traits`` as
        written) and the dropped ones counted by reason."""
        measured = self.assessor.measure(personas, self.space, seed=seed)
        self._summaries.append(measured.summary)
        kept: list[dict[str, Any]] = []
        dropped: Counter = Counter()
        for record, found in zip(measured.records, measured.measurements, strict=True):
            if found.reason is None and isinstance(record, dict):
                kept.append(record)
            elif found.reason == "malformed":
                dropped["malformed"] += 1
            else:
                dropped[f"unmeasured: {found.reason or 'not measured'}"] += 1
        return kept, dropped

    def summary(self) -> AssessmentSummary:
        """All chunks' assessment as one summary (see the module docstring)."""
        return merge_summaries(self.method, self._summaries)


def merge_summaries(method: str, parts: list[AssessmentSummary]) -> AssessmentSummary:
    """One summary for several chunks' (module docstring)."""
    unmeasured: Counter = Counter()
    detail: dict[str, Any] = {}
    relevance: dict[str, float] = {}
    for part in parts:
        unmeasured.update(part.unmeasured)
        for key, value in part.detail.items():
            if key in _SUMMED:
                detail[key] = detail.get(key, 0) + value
            elif key == "mean_relevance":
                for axis, mean in value.items():
                    relevance[axis] = relevance.get(axis, 0.0) + mean * part.measured
            elif key != "parse_rate":
                detail.setdefault(key, value)
    measured = sum(p.measured for p in parts)
    if relevance:
        detail["mean_relevance"] = {a: round(v / max(measured, 1), 4) for a, v in relevance.items()}
    if "answers" in detail:
        answers = detail["answers"]
        detail["parse_rate"] = round(detail.get("parsed", 0) / answers, 4) if answers else 0.0
    return AssessmentSummary(
        method=method,
        personas=sum(p.personas for p in parts),
        measured=measured,
        unmeasured=dict(unmeasured.most_common()),
        seconds=round(sum(p.seconds for p in parts), 4),
        detail=detail,
    )


def export_assessor(files: RunFiles, method: str | None, llm: LLM | None) -> Assessor | None:
    """The assessor an export measures with: ``method`` (``--assess``) or the run's
    ``assess``; None for ``explicit`` (the declared traits are the positions). Checked
    against the space before any work."""
    method = method or files.config.assess
    check_assessable(files.space, method)
    if method == "explicit":
        return None
    assessor = make_assessor(method, llm=llm)
    if method == "embedding":
        assessor.frames(files.space)  # load the sentence encoder now: fail before any work
    return assessor
