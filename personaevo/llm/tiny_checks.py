"""Behavioural checks of a trained tiny model (or any chat model): does it do the three jobs
the corpus teaches? Used by the tests and by ``experiments/bench_tiny_model.py``.

On held-out prompts (seed ``seed``, greedy decoding):

* ``likert_parse_rate`` -- share of Likert prompts (the spaces' declared items, personas in
  both description styles) answered with exactly one digit 1-5; chance for a model that
  emits a random token first is about 5 / vocabulary size;
* ``likert_correlation`` -- Pearson correlation between the parsed answers and the answer
  the corpus rule gives (:func:`~personaevo.llm.corpus.likert_answer` without noise); 0 for
  a model that ignores the persona;
* ``description_recall`` -- share of requested traits whose ``Label: value`` sentence
  appears in the generated description;
* ``stop_recall`` -- share of simulator turns with intent ``end`` that say ``###STOP###``;
  ``stop_false_rate`` -- share of the other turns that say it.
"""

from __future__ import annotations

import random
import re

import numpy as np
from pydantic import BaseModel

from personaevo.llm.base import LLM, SamplingParams
from personaevo.llm.corpus import (
    STOP_MARKER,
    STYLES,
    corpus_spaces,
    describe_axis,
    describe_persona,
    describe_request,
    likert_answer,
    likert_messages,
    position,
    sample_persona,
    section_conversations,
)

__all__ = ["TinyChecks", "check_model"]

_DIGIT = re.compile(r"[1-5]")


class TinyChecks(BaseModel):
    likert_parse_rate: float
    likert_correlation: float
    description_recall: float
    stop_recall: float
    stop_false_rate: float
    prompts: int


def check_model(llm: LLM, n: int = 60, seed: int = 12345) -> TinyChecks:
    """Run the checks with ``n`` prompts per job (module docstring)."""
    r = random.Random(seed)
    spaces = [s for s in corpus_spaces() if any(a.items for a in s.axes)]
    likert, expected = [], []
    for _ in range(n):
        space = r.choice(spaces)
        traits = sample_persona(space, r)
        axis = r.choice([a for a in space.axes if a.items])
        item = r.choice(axis.items)
        persona = describe_persona(space, traits, style=r.choice(STYLES))
        likert.append(likert_messages(persona, item.text))
        u = position(axis, traits[axis.name])
        expected.append(likert_answer(u, -1 if item.reverse else 1))
    greedy = SamplingParams(max_tokens=4, temperature=0.0)
    replies = [c.text.strip() for c in llm.chat(likert, greedy)]
    parsed = [(int(t), e) for t, e in zip(replies, expected, strict=True) if _DIGIT.fullmatch(t)]
    correlation = 0.0
    if len(parsed) > 2:
        got, want = np.array(parsed, dtype=float).T
        if got.std() > 0 and want.std() > 0:
            correlation = float(np.corrcoef(got, want)[0, 1])

    requests, wanted = [], []
    for _ in range(n // 2):
        space = r.choice(list(corpus_spaces()))
        traits = sample_persona(space, r)
        requests.append(describe_request(space, traits))
        axes = space.axis_by_name
        wanted.append([describe_axis(axes[k], v).split(".")[0] for k, v in traits.items()])
    texts = [c.text for c in llm.chat(requests, SamplingParams(max_tokens=120, temperature=0))]
    hits = [
        sum(s in text for s in want) / len(want) for text, want in zip(texts, wanted, strict=True)
    ]

    pool = section_conversations("simulator_turns", 8 * n, seed)
    # Split on the reference reply, not the prompt's wording: the section may be replaced
    # (the simulator registers its own format). One-letter replies are Q&A probes.
    turns = [conv for conv in pool if len(conv[-1].content.strip()) > 1]
    ending = [conv for conv in turns if STOP_MARKER in conv[-1].content][: n // 4]
    going = [conv for conv in turns if STOP_MARKER not in conv[-1].content][: n // 4]
    if not ending or not going:
        raise ValueError("the simulator_turns section gave no ending or no ongoing turn")
    prompts = [conv[:-1] for conv in ending + going]
    said = [c.text for c in llm.chat(prompts, SamplingParams(max_tokens=60, temperature=0))]
    stops = [STOP_MARKER in text for text in said]
    return TinyChecks(
        likert_parse_rate=round(len(parsed) / len(replies), 4),
        likert_correlation=round(correlation, 4),
        description_recall=round(float(np.mean(hits)), 4),
        stop_recall=round(float(np.mean(stops[: len(ending)])), 4),
        stop_false_rate=round(float(np.mean(stops[len(ending) :])), 4),
        prompts=len(likert) + len(requests) + len(prompts),
    )
