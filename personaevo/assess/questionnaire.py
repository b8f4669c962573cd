"""The questionnaire assessor: a language model answers the space's Likert items in persona.

For every persona with text and every item of every ordered axis (``items`` in the space
file), one conversation: the system turn is the persona's text (description and profile,
:func:`~personaevo.assess.base.persona_text`), the user turn is the statement and "Answer
with a single number 1-5" (:func:`personaevo.llm.corpus.likert_messages`, the format the
tiny model is trained on). Each item is asked on its own, with no memory of the others,
and all persona × item conversations go to the model in **one** batched
:meth:`~personaevo.llm.base.LLM.chat` call, sampled with ``seed`` (temperature 0 by
default: a measuring instrument should give the same reading twice).

Scoring, per persona and axis with items ``1..k``:

* a reply is *parsed* only when, after trimming white space, it is a single digit 1-5
  (``"4"`` is; ``"4."``, ``"I'd say 4"``, ``"6"`` are not);
* a reverse-keyed item's answer ``x`` scores ``6 - x``;
* the axis is measured when at least half its items were parsed (``2·parsed ≥ k``, the
  proration rule of reference scale scores); its position is
  ``u = (mean score - 1) / 4`` ∈ [0, 1], mapped to native units by
  :func:`~personaevo.assess.base.unit_to_native`;
* otherwise the persona is unmeasured (``unmeasured: unparsed answers``).

Axes without items (categorical axes cannot have any) keep the persona's declared value.
A persona without text is unmeasured (``no text``); a model call that fails leaves every
asked persona unmeasured (``llm error``) and the error in the summary, never a crash.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from personaevo.assess.base import (
    Assessor,
    MeasuredPositions,
    PersonaMeasurement,
    Record,
    as_persona,
    persona_text,
    record_id,
    summarise,
    unit_to_native,
    with_traits,
)
from personaevo.errors import InputError
from personaevo.llm.base import LLM, SamplingParams
from personaevo.llm.corpus import likert_messages
from personaevo.personas import Unmeasured
from personaevo.spaces import CategoricalAxis, TraitSpace

_ANSWER = re.compile(r"[1-5]")


def parse_answer(reply: str) -> int | None:
    """The Likert answer in ``reply``: a single digit 1-5 after trimming, else None."""
    text = reply.strip()
    return int(text) if _ANSWER.fullmatch(text) else None


def questionnaire_axes(space: TraitSpace) -> list:
    """The axes a questionnaire measures: ordered axes that declare items."""
    return [a for a in space.axes if a.items and not isinstance(a, CategoricalAxis)]


class QuestionnaireAssessor(Assessor):
    """Measures personas by their in-persona answers to Likert items (module docstring)."""

    method = "questionnaire"

    def __init__(self, llm: LLM, temperature: float = 0.0, max_tokens: int = 8) -> None:
        self.llm = llm
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _measure(self, personas: list[Record], space: TraitSpace, seed: int) -> MeasuredPositions:
        axes = questionnaire_axes(space)
        if not axes:
            raise InputError(
                f"space {space.name!r} declares no Likert items (axes[].items): "
                "a questionnaire has nothing to ask"
            )
        items = [(axis, item) for axis in axes for item in axis.items]
        parsed = [as_persona(r) for r in personas]
        texts = [persona_text(p) if p else "" for p in parsed]
        asked = [i for i, (p, t) in enumerate(zip(parsed, texts, strict=True)) if p and t]
        conversations = [likert_messages(texts[i], item.text) for i in asked for _, item in items]
        params = SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, seed=seed)
        error = ""
        try:
            replies = [c.text for c in self.llm.chat(conversations, params)]
        except Exception as exc:  # an unreachable or broken model: count, do not crash
            error = f"{type(exc).__name__}: {exc}"[:500]
            replies = []
        answers = {i: replies[k * len(items) : (k + 1) * len(items)] for k, i in enumerate(asked)}
        unparsed: Counter[str] = Counter()
        records, measurements = [], []
        n_parsed = 0
        for index, (record, persona) in enumerate(zip(personas, parsed, strict=True)):
            if persona is None:
                records.append(record)
                measurements.append(PersonaMeasurement(id=record_id(record), reason="malformed"))
            elif not texts[index]:
                records.append(Unmeasured(persona.id, "no text", "no description or profile"))
                measurements.append(PersonaMeasurement(id=persona.id, reason="no text"))
            elif error:
                records.append(Unmeasured(persona.id, "llm error", error))
                measurements.append(PersonaMeasurement(id=persona.id, reason="llm error"))
            else:
                record_out, measurement, ok = self._score(persona, items, answers[index], unparsed)
                n_parsed += ok
                records.append(record_out)
                measurements.append(measurement)
        total = len(asked) * len(items)
        detail: dict[str, Any] = {
            "llm": getattr(self.llm, "name", type(self.llm).__name__),
            "items": len(items),
            "answers": total,
            "parsed": n_parsed,
            "parse_rate": round(n_parsed / total, 4) if total and not error else 0.0,
            "unparsed_examples": [text for text, _ in unparsed.most_common(5)],
        }
        if error:
            detail["error"] = error
        return MeasuredPositions(
            records=records,
            measurements=measurements,
            summary=summarise(self.method, measurements, detail),
        )

    @staticmethod
    def _score(
        persona, items: list, replies: list[str], unparsed: Counter[str]
    ) -> tuple[Any, PersonaMeasurement, int]:
        """One persona's record, measurement and number of parsed answers."""
        scores: dict[str, list[int]] = {}
        counts: dict[str, int] = {}
        for (axis, item), reply in zip(items, replies, strict=True):
            counts[axis.name] = counts.get(axis.name, 0) + 1
            answer = parse_answer(reply)
            if answer is None:
                unparsed[reply.strip()[:40]] += 1
                continue
            scores.setdefault(axis.name, []).append(6 - answer if item.reverse else answer)
        n_ok = sum(len(v) for v in scores.values())
        short = [
            f"{name}: {len(scores.get(name, []))} of {k} answers parsed"
            for name, k in counts.items()
            if 2 * len(scores.get(name, [])) < k
        ]
        detail = {"parsed": n_ok, "asked": len(replies)}
        if short:
            reason = Unmeasured(persona.id, "unparsed answers", "; ".join(short))
            return (
                reason,
                PersonaMeasurement(id=persona.id, reason="unparsed answers", detail=detail),
                n_ok,
            )
        traits = dict(persona.traits)
        positions = {}
        axes = {axis.name: axis for axis, _ in items}
        for name, values in scores.items():
            u = (sum(values) / len(values) - 1.0) / 4.0
            positions[name] = round(u, 6)
            traits[name] = unit_to_native(axes[name], u)
        measurement = PersonaMeasurement(id=persona.id, positions=positions, detail=detail)
        return with_traits(persona, traits), measurement, n_ok
