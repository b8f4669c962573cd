"""Q&A consistency (Abdulhai et al. 2025): multiple-choice questions written from the
profile, answered in persona after a turn, graded exactly.

:func:`make_questions` draws questions from the facts the user knows (profile facts and
the goal's known information). Each has :data:`N_OPTIONS` options: the true value and
distractors of the same kind (other ages at least 3 years away; names, jobs and cities
from the profile pools; for any other fact, the value with its digits redrawn, or values
the same key has elsewhere). Options are shuffled by the seeded generator.

The probe is asked as one more agent message after the user's line (see
:func:`question_messages`); the answer is the first stand-alone option letter in the
reply, and the score of a turn is the share of its questions answered right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from personaevo.llm import LLM, Message, SamplingParams
from personaevo.simulator.profiles import CITIES, FIRST_NAMES, LAST_NAMES, OCCUPATIONS

N_OPTIONS = 4
LETTERS = "ABCDEFGH"
PROBE_INTENT = "answer (reply with the letter only)"
_QUESTIONS = {
    "name": "What is your name?",
    "age": "How old are you?",
    "occupation": "What is your occupation?",
    "location": "Where do you live?",
}


class MCQuestion(BaseModel):
    """A multiple-choice question about one fact; ``answer`` indexes ``options``."""

    field: str
    question: str
    options: list[str]
    answer: int

    def text(self) -> str:
        listed = " ".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(self.options))
        return f"Quick question: {self.question} {listed}"

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def _distractors(
    key: str, value: str | int, rng: np.random.Generator, pools: dict[str, Sequence[str]]
) -> list[str]:
    truth = str(value)
    if key == "age":
        age = int(value)
        candidates = [a for a in range(14, 96) if abs(a - age) >= 3]
        picks = rng.choice(candidates, N_OPTIONS - 1, replace=False)
        return [str(int(a)) for a in picks]
    if key == "name":
        first = truth.split()[0] if truth.split() else truth
        pool = [f"{f} {last_name}" for f in FIRST_NAMES for last_name in LAST_NAMES[:4]]
        pool = [p for p in pool if not p.startswith(first)]
    elif key == "occupation":
        pool = [o for o in (*OCCUPATIONS, "student", "retired") if o != truth]
    elif key == "location":
        pool = [c for c in CITIES if c != truth]
    elif re.search(r"\d", truth):
        pool = set()
        while len(pool) < N_OPTIONS - 1:
            fake = re.sub(r"\d", lambda _: str(int(rng.integers(10))), truth)
            if fake != truth:
                pool.add(fake)
        pool = sorted(pool)
    else:
        pool = sorted({str(v) for v in pools.get(key, ()) if str(v) != truth})
    if len(pool) < N_OPTIONS - 1:
        return []
    picks = rng.choice(len(pool), N_OPTIONS - 1, replace=False)
    return [pool[int(i)] for i in picks]


def make_questions(
    facts: dict[str, str | int],
    rng: np.random.Generator,
    k: int = 2,
    pools: dict[str, Sequence[str]] | None = None,
) -> list[MCQuestion]:
    """Up to ``k`` questions about distinct facts, chosen at random among those for which
    enough distractors exist."""
    if k <= 0:
        return []
    pools = pools or {}
    keys = list(facts)
    out: list[MCQuestion] = []
    for index in rng.permutation(len(keys)):
        key = keys[int(index)]
        wrong = _distractors(key, facts[key], rng, pools)
        if not wrong:
            continue
        options = [str(facts[key]), *wrong]
        order = rng.permutation(len(options))
        question = _QUESTIONS.get(key, f"What is your {key.replace('_', ' ')}?")
        out.append(
            MCQuestion(
                field=key,
                question=question,
                options=[options[int(i)] for i in order],
                answer=int(np.flatnonzero(order == 0)[0]),
            )
        )
        if len(out) == k:
            break
    return out


def question_messages(context: list[Message], line: str, question: MCQuestion) -> list[Message]:
    """The probe: the simulator's input, the user's line, then the question as an agent
    message."""
    return [
        *context,
        Message(role="assistant", content=line),
        Message(role="user", content=f"Agent: {question.text()}\nIntent: {PROBE_INTENT}"),
    ]


def parse_letter(text: str, n_options: int = N_OPTIONS) -> int | None:
    """The index of the first stand-alone option letter in ``text`` (``"B"``, ``"B)"``,
    ``"(b)"``), or None."""
    match = re.search(rf"(?<![A-Za-z])([A-{LETTERS[n_options - 1]}])(?![A-Za-z])", text.upper())
    return LETTERS.index(match.group(1)) if match else None


ANSWER_PARAMS = SamplingParams(max_tokens=3, temperature=0.0, seed=0)


def answer_questions(
    llm: LLM, cases: Sequence[tuple[list[Message], str, MCQuestion]]
) -> list[bool]:
    """Ask every ``(context, line, question)`` probe in one batch; True where the reply
    picks the right option."""
    if not cases:
        return []
    conversations = [question_messages(ctx, line, q) for ctx, line, q in cases]
    replies = llm.chat(conversations, ANSWER_PARAMS)
    return [
        parse_letter(reply.text, len(q.options)) == q.answer
        for reply, (_, _, q) in zip(replies, cases, strict=True)
    ]
