"""How good is a judge? A labelled set of simulated-user lines with known answers.

Every reward and every evaluation of a simulator rests on a judge's yes/no decisions, so
a judge must be measured before it is trusted. :func:`build_judge_set` writes user lines
whose labels are known by construction. Each line has one of four kinds:

* ``consistent``: states facts that agree with the persona, or no fact at all;
* ``contradiction``: states a fact that disagrees with the persona (age, job, city);
* ``leak``: states what the user does not know (an amount the agent has not given);
* ``assistant``: sounds like the support agent, not the customer.

Each kind comes in two *families*. ``pattern`` lines use the phrasings that
:class:`~personaevo.simulator.judges.RuleJudge` was written for ("I'm 34", "$45", "How
can I help"). ``paraphrase`` lines say the same thing in words those rules do not match
("I turned 52 last spring", "forty-five dollars"). A judge measured only on the first
family would be measured on its own rules: the second is what keeps the set from being a
closed loop. :func:`measure_judge` asks every judge three questions about every line:
does it contradict the persona, does it leak the unknown information, does it sound
like the assistant. For each question it reports

    accuracy          = correct / lines              (unreadable replies count as wrong)
    balanced accuracy = (TP / positives + TN / negatives) / 2   (the same; 0.5 = chance)
    precision = TP / (TP + FP),  recall = TP / (TP + FN)   (over readable replies)

with the unreadable replies counted beside them, overall and per family.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from personaevo.simulator.goals import UnknownInfo
from personaevo.simulator.judges import Judge
from personaevo.simulator.verdicts import Verdict

Kind = Literal["consistent", "contradiction", "leak", "assistant"]
Family = Literal["pattern", "paraphrase"]
QUESTIONS: tuple[str, ...] = ("contradicts_profile", "leaks_unknown", "assistant_speak")
_POSITIVE: dict[str, Kind] = {
    "contradicts_profile": "contradiction",
    "leaks_unknown": "leak",
    "assistant_speak": "assistant",
}

_NAMES = ["Maria Lopez", "James Chen", "Aisha Khan", "Tom Becker", "Yuki Sato", "Ola Nowak"]
_JOBS = ["nurse", "teacher", "electrician", "accountant", "chef", "mechanic", "librarian"]
_CITIES = ["Leeds", "Porto", "Denver", "Osaka", "Lyon", "Krakow", "Austin"]
_UNKNOWN = [  # (what the user does not know, its domain wording, a value in digits, in words)
    ("the refund amount", "refund", "$45", "forty-five dollars"),
    ("the change fee", "change fee", "$120", "a hundred and twenty dollars"),
    ("the account balance", "balance", "$310", "three hundred and ten dollars"),
]
_NUMBER_WORDS = {
    20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
}  # fmt: skip


def _age_in_words(age: int) -> str:
    tens, ones = divmod(age, 10)
    units = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    return _NUMBER_WORDS[tens * 10] + (f"-{units[ones]}" if ones else "")


class LabelledLine(BaseModel):
    """A user line with its known label and the persona and goal it is judged against."""

    kind: Kind
    family: Family
    facts: dict[str, str | int]
    persona_text: str
    unknown: UnknownInfo
    line: str


def build_judge_set(seed: int = 0, personas: int = 24) -> list[LabelledLine]:
    """``personas`` seeded personas x 4 kinds x 2 families = ``8 * personas`` lines."""
    rng = np.random.default_rng([seed, 0x1D6E])
    lines: list[LabelledLine] = []
    for _ in range(personas):
        name = _NAMES[int(rng.integers(len(_NAMES)))]
        age = int(rng.integers(22, 68))
        job, other_job = (str(x) for x in rng.choice(_JOBS, 2, replace=False))
        city, other_city = (str(x) for x in rng.choice(_CITIES, 2, replace=False))
        other_age = age + int(rng.choice([-1, 1])) * int(rng.integers(7, 20))
        what, word, digits, spelled = _UNKNOWN[int(rng.integers(len(_UNKNOWN)))]
        facts: dict[str, str | int] = {"name": name, "age": age, "occupation": job}
        facts["location"] = city
        persona = f"{name}, {age}, a {job} who lives in {city}."
        unknown = UnknownInfo(text=what, patterns=[r"\$ ?\d+", r"\d+ dollars"])
        texts: dict[tuple[Kind, Family], str] = {
            ("consistent", "pattern"): f"I'm {age} and I work as a {job}, so I need this fixed.",
            ("consistent", "paraphrase"): rng.choice(
                [
                    f"Being a {job} in {city}, I don't have time to call twice.",
                    f"At {_age_in_words(age)} I've learned to keep my receipts.",
                    "I just want this sorted out today, please.",
                ]
            ),
            ("contradiction", "pattern"): rng.choice(
                [
                    f"I'm {other_age} and I work as a {job}.",
                    f"I work as a {other_job}, and I need this fixed.",
                    f"I live in {other_city}, so the store is far from me.",
                ]
            ),
            ("contradiction", "paraphrase"): rng.choice(
                [
                    f"I turned {other_age} last spring, so I remember these things.",
                    f"Ever since I started as a {other_job}, I've had no free mornings.",
                    f"Back home in {other_city} we would have had this solved by now.",
                ]
            ),
            ("leak", "pattern"): f"I already know the {word} is {digits}, so just confirm it.",
            ("leak", "paraphrase"): f"The {word} comes to {spelled}, I checked that myself.",
            ("assistant", "pattern"): rng.choice(
                [
                    "How can I help you today?",
                    "Thank you for contacting us. Is there anything else I can help with?",
                ]
            ),
            ("assistant", "paraphrase"): rng.choice(
                [
                    "Let me pull up the account and get back to you with a resolution.",
                    "I've gone ahead and processed that on our end for the customer.",
                ]
            ),
        }
        for (kind, family), text in texts.items():
            lines.append(
                LabelledLine(
                    kind=kind,
                    family=family,
                    facts=facts,
                    persona_text=persona,
                    unknown=unknown,
                    line=str(text),
                )
            )
    return lines


class Confusion(BaseModel):
    """One question's outcomes over a set of lines."""

    lines: int = 0
    true_positive: int = 0
    false_positive: int = 0
    true_negative: int = 0
    false_negative: int = 0
    unreadable_positive: int = 0  # unreadable replies about lines whose answer is yes
    unreadable_negative: int = 0

    @property
    def unreadable(self) -> int:
        return self.unreadable_positive + self.unreadable_negative

    def add(self, truth: bool, verdict: Verdict) -> None:
        self.lines += 1
        if verdict is Verdict.UNREADABLE:
            self.unreadable_positive += truth
            self.unreadable_negative += not truth
        elif verdict is Verdict.YES:
            self.true_positive += truth
            self.false_positive += not truth
        else:
            self.false_negative += truth
            self.true_negative += not truth

    @property
    def accuracy(self) -> float:
        """Correct / lines, an unreadable reply counting as wrong."""
        return (self.true_positive + self.true_negative) / self.lines if self.lines else 0.0

    @property
    def balanced_accuracy(self) -> float:
        """``(TP / positives + TN / negatives) / 2``, unreadable replies counting as wrong:
        0.5 for a judge that always says no (whose plain accuracy is the share of
        negatives, 0.75 here)."""
        positives = self.true_positive + self.false_negative + self.unreadable_positive
        negatives = self.true_negative + self.false_positive + self.unreadable_negative
        rates = [self.true_positive / positives if positives else 0.0]
        rates.append(self.true_negative / negatives if negatives else 0.0)
        return sum(rates) / 2

    @property
    def precision(self) -> float | None:
        said_yes = self.true_positive + self.false_positive
        return self.true_positive / said_yes if said_yes else None

    @property
    def recall(self) -> float | None:
        positives = self.true_positive + self.false_negative
        return self.true_positive / positives if positives else None


class JudgeReport(BaseModel):
    """A judge's confusion per question, overall and per family, and its time."""

    judge: str
    lines: int
    seconds: float
    questions: dict[str, Confusion]  # question -> over all lines
    by_family: dict[str, dict[str, Confusion]]  # family -> question -> confusion

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per question: accuracy, precision, recall, unreadable (JSON-ready)."""
        return {
            q: {
                "accuracy": round(c.accuracy, 4),
                "balanced_accuracy": round(c.balanced_accuracy, 4),
                "precision": None if c.precision is None else round(c.precision, 4),
                "recall": None if c.recall is None else round(c.recall, 4),
                "unreadable": c.unreadable,
            }
            for q, c in self.questions.items()
        }


def measure_judge(judge: Judge, lines: Sequence[LabelledLine]) -> JudgeReport:
    """Ask ``judge`` the three questions about every line (three batched calls)."""
    start = time.perf_counter()
    answers = {
        "contradicts_profile": judge.contradicts_profile(
            [(x.facts, x.persona_text, x.line) for x in lines]
        ),
        "leaks_unknown": judge.leaks([(x.unknown, x.line) for x in lines]),
        "assistant_speak": judge.assistant_speak([x.line for x in lines]),
    }
    seconds = time.perf_counter() - start
    overall = {q: Confusion() for q in QUESTIONS}
    by_family: dict[str, dict[str, Confusion]] = {}
    for question, verdicts in answers.items():
        for line, verdict in zip(lines, verdicts, strict=True):
            truth = line.kind == _POSITIVE[question]
            overall[question].add(truth, verdict)
            family = by_family.setdefault(line.family, {q: Confusion() for q in QUESTIONS})
            family[question].add(truth, verdict)
    return JudgeReport(
        judge=judge.name,
        lines=len(lines),
        seconds=round(seconds, 2),
        questions=overall,
        by_family=by_family,
    )
