"""A judge's answer to one yes/no question: yes, no, or unreadable.

An LLM judge may reply with something that is neither ``yes`` nor ``no`` ("maybe", an
empty string, a restated question). Such a reply is no evidence either way, so it is its
own outcome, :attr:`Verdict.UNREADABLE`, never folded into ``no`` (which would count an
unreadable "does this line contradict the persona?" as consistent, and an unreadable
"does the agent say this is done?" as not done). The rule judge is always readable.

A :class:`Verdict` refuses ``bool()``: ``if verdict:`` raises :class:`TypeError`, so a
consumer cannot treat unreadable as ``no`` by accident; it compares with
:attr:`Verdict.YES` / :attr:`Verdict.NO` or asks :attr:`Verdict.readable`.

Several verdicts about one line combine with :meth:`Verdict.any_of`, the three-valued
(Kleene) "or": yes if any is yes, else unreadable if any is unreadable, else no (also for
none at all). Scores over several verdicts use the readable ones only:
``score = f(readable verdicts)``, and the unreadable ones are counted beside it in a
:class:`JudgementCount` (``unreadable_share = unreadable / judgements``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from pydantic import BaseModel, Field, computed_field


class Verdict(Enum):
    """One judgement: ``YES``, ``NO`` or ``UNREADABLE`` (see the module docstring)."""

    YES = "yes"
    NO = "no"
    UNREADABLE = "unreadable"

    @classmethod
    def of(cls, flag: bool) -> Verdict:
        """``YES`` for True, ``NO`` for False (a decision that is always readable)."""
        return cls.YES if flag else cls.NO

    @classmethod
    def any_of(cls, verdicts: Iterable[Verdict]) -> Verdict:
        """Three-valued "or": ``YES`` if any is ``YES``, else ``UNREADABLE`` if any is
        ``UNREADABLE``, else ``NO`` (``NO`` for no verdicts)."""
        seen = set(verdicts)
        if cls.YES in seen:
            return cls.YES
        return cls.UNREADABLE if cls.UNREADABLE in seen else cls.NO

    @property
    def readable(self) -> bool:
        """Whether the judge answered yes or no."""
        return self is not Verdict.UNREADABLE

    def __bool__(self) -> bool:
        raise TypeError(
            f"a Verdict is not a bool ({self.name}): compare it with Verdict.YES or "
            "Verdict.NO, or check .readable"
        )


class JudgementCount(BaseModel):
    """How many judgements stand behind a measure and how many of them were unreadable
    (``unreadable_share = unreadable / judgements``, None without judgements)."""

    judgements: int = Field(0, ge=0)
    unreadable: int = Field(0, ge=0)

    @computed_field
    @property
    def unreadable_share(self) -> float | None:
        return self.unreadable / self.judgements if self.judgements else None

    def add(self, verdicts: Iterable[Verdict]) -> None:
        """Count ``verdicts`` in (in place)."""
        for verdict in verdicts:
            self.judgements += 1
            self.unreadable += verdict is Verdict.UNREADABLE

    def __add__(self, other: JudgementCount) -> JudgementCount:
        return JudgementCount(
            judgements=self.judgements + other.judgements,
            unreadable=self.unreadable + other.unreadable,
        )

    def __sub__(self, other: JudgementCount) -> JudgementCount:
        return JudgementCount(
            judgements=self.judgements - other.judgements,
            unreadable=self.unreadable - other.unreadable,
        )

    def text(self) -> str:
        """``"3/120 (2.5%)"``, or ``"-"`` without judgements."""
        if not self.judgements:
            return "-"
        return f"{self.unreadable}/{self.judgements} ({self.unreadable / self.judgements:.1%})"
