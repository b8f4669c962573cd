"""Judges: yes/no decisions about simulated-user lines, batched.

Every question a reward or the goal tracker asks is a yes/no question about one line:

* does the line contradict the persona (prompt-to-line, Abdulhai et al. 2025)?
* does it clearly contradict an earlier line of the same speaker (line-to-line)?
* does it perform the turn's intent? does it attempt / violate a goal item? does the
  agent's line accomplish one? does it leak unknown information? does it sound like the
  assistant rather than the user (role fidelity)?

:class:`RuleJudge` needs no language model: it compares the facts a line states
(:func:`~personaevo.simulator.profiles.extract_facts`: age, name, occupation, location,
``"my KEY is VALUE"``) with the structured profile and the goal's known information, and
matches the intent and goal cue patterns. :class:`LLMJudge` asks any
:class:`~personaevo.llm.LLM` the same questions, one batch per call, greedy, and reads
the first word of the reply.

Every answer is a :class:`~personaevo.simulator.verdicts.Verdict`: ``YES``, ``NO`` or
``UNREADABLE``. The rule judge is always readable; the LLM judge answers ``UNREADABLE``
when the first word of the reply is neither ``yes`` nor ``no`` (case-insensitive), never
``NO``. What each consumer does with an unreadable verdict: the goal state leaves the item
as it was (:func:`~personaevo.simulator.goals.after_user`), a reward is computed from the
readable verdicts only and is None when it has none
(:mod:`personaevo.simulator.rewards`), and evaluation reports the counts per measure
(:mod:`personaevo.simulator.evaluation`). ``judge.tally`` counts every verdict a judge has
given and the unreadable ones among them (a running total; a consumer takes the
difference around its calls).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from personaevo.llm import LLM, Message, SamplingParams
from personaevo.simulator.goals import (
    BEHAVIOUR_KINDS,
    FACTS_ITEM,
    UNKNOWN_ITEM,
    GoalItem,
    UnknownInfo,
    UserChecks,
    UserGoal,
)
from personaevo.simulator.intents import DESCRIPTIONS, Intent, follows_intent
from personaevo.simulator.profiles import extract_facts, fact_conflicts
from personaevo.simulator.verdicts import JudgementCount, Verdict

Check = Literal["attempts", "accomplishes", "violates"]
Facts = dict[str, str | int]

_ASSISTANT_SPEAK = re.compile(
    r"\bhow (?:can|may) i (?:help|assist)\b|\bis there anything else i can\b|\bas an ai\b"
    r"|\bi(?:'m| am) (?:an? )?(?:ai|assistant|language model|chatbot|support agent)\b"
    r"|\bthank you for (?:contacting|calling|reaching out)\b|\bi can help you\b"
    r"|\bi understand your (?:frustration|concern)\b|\bapologi[sz]e for the inconvenience\b"
    r"|\byour (?:refund|order|booking|request|exchange) (?:has been|is being) \w+ed\b"
    r"|^\s*(?:agent|assistant|support)\s*:|\bhappy to help\b|\bwhat can i do for you\b",
    re.IGNORECASE | re.MULTILINE,
)
# the implicit items are decided by contradicts_profile and leaks, not as free-text rules
_IMPLICIT = frozenset({FACTS_ITEM, UNKNOWN_ITEM})
_STOPWORD_TEXT = (
    "the a an and or of to for your you my me with from that this have has get give ask "
    "about into than then them they their there what when where which while will would"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_DONE = re.compile(
    r"\b(done|processed|issued|booked|changed|cancel+ed|sent|completed|confirmed|updated"
    r"|refunded|approved|placed|reset)\b",
    re.IGNORECASE,
)


def content_words(text: str) -> list[str]:
    """Lower-case words of four letters or more that are not stop words."""
    return [w for w in re.findall(r"[a-z0-9#]{4,}", text.lower()) if w not in _STOPWORDS]


def _any(patterns: Sequence[str], text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def _keywords_hit(item: GoalItem, text: str) -> bool:
    words = content_words(item.text)
    lower = text.lower()
    hits = sum(w in lower for w in words)
    return bool(words) and hits >= max(1, (len(words) + 1) // 2)


@dataclass(frozen=True)
class UserLine:
    """A simulated user's line to check against its goal and profile facts."""

    goal: UserGoal
    facts: Facts
    persona_text: str
    line: str


class Judge(ABC):
    """Batched yes/no decisions about simulated-user lines, each a :class:`Verdict`.

    The public methods count every verdict in :attr:`tally` and delegate to the
    ``_decide_*`` methods a judge implements."""

    name = "judge"

    def __init__(self) -> None:
        self.tally = JudgementCount()

    def _counted(self, verdicts: list[Verdict]) -> list[Verdict]:
        self.tally.add(verdicts)
        return verdicts

    def contradicts_profile(self, cases: Sequence[tuple[Facts, str, str]]) -> list[Verdict]:
        """``(facts, persona_text, line)``: does the line contradict the persona?"""
        return self._counted(self._decide_contradicts_profile(cases))

    def contradicts_line(self, cases: Sequence[tuple[str, str]]) -> list[Verdict]:
        """``(earlier, line)``: does ``line`` clearly contradict ``earlier`` (same speaker)?"""
        return self._counted(self._decide_contradicts_line(cases))

    def follows_intent(self, cases: Sequence[tuple[str, Intent]]) -> list[Verdict]:
        """``(line, intent)``: does the line perform the intent?"""
        return self._counted(self._decide_follows_intent(cases))

    def item_checks(self, cases: Sequence[tuple[Check, GoalItem, str]]) -> list[Verdict]:
        """``(check, item, line)``: does the (user) line attempt or violate the item, or does
        the (agent) line accomplish it?"""
        return self._counted(self._decide_item_checks(cases))

    def leaks(self, cases: Sequence[tuple[UnknownInfo, str]]) -> list[Verdict]:
        """``(unknown, line)``: does the line state what the user does not know?"""
        return self._counted(self._decide_leaks(cases))

    def assistant_speak(self, lines: Sequence[str]) -> list[Verdict]:
        """Does the line sound like the assistant/agent rather than the user?"""
        return self._counted(self._decide_assistant_speak(lines))

    @abstractmethod
    def _decide_contradicts_profile(
        self, cases: Sequence[tuple[Facts, str, str]]
    ) -> list[Verdict]: ...

    @abstractmethod
    def _decide_contradicts_line(self, cases: Sequence[tuple[str, str]]) -> list[Verdict]: ...

    @abstractmethod
    def _decide_follows_intent(self, cases: Sequence[tuple[str, Intent]]) -> list[Verdict]: ...

    @abstractmethod
    def _decide_item_checks(
        self, cases: Sequence[tuple[Check, GoalItem, str]]
    ) -> list[Verdict]: ...

    @abstractmethod
    def _decide_leaks(self, cases: Sequence[tuple[UnknownInfo, str]]) -> list[Verdict]: ...

    @abstractmethod
    def _decide_assistant_speak(self, lines: Sequence[str]) -> list[Verdict]: ...

    def user_checks(self, cases: Sequence[UserLine]) -> list[UserChecks]:
        """Everything the goal tracker needs about each user line, in few batched calls
        (see :class:`~personaevo.simulator.goals.UserChecks`)."""
        item_cases: list[tuple[Check, GoalItem, str]] = []
        layout = []  # per case, per item: (attempted, violated) answer index or -1
        for case in cases:
            rows = []
            for kind, item in case.goal.items():
                if kind not in BEHAVIOUR_KINDS:
                    rows.append((len(item_cases), -1))
                    item_cases.append(("attempts", item, case.line))
                elif self._judges_free_items(item) and item.text not in _IMPLICIT:
                    rows.append((-1, len(item_cases)))
                    item_cases.append(("violates", item, case.line))
                else:
                    rows.append((-1, -1))
            layout.append(rows)
        answers = self.item_checks(item_cases)
        contradictions = self.contradicts_profile(
            [(c.facts, c.persona_text, c.line) for c in cases]
        )
        leak_cases, leak_owner = [], []
        for k, case in enumerate(cases):
            for unknown in case.goal.instructions.unknown_info:
                leak_cases.append((unknown, case.line))
                leak_owner.append(k)
        leak_verdicts: list[list[Verdict]] = [[] for _ in cases]
        for owner, verdict in zip(leak_owner, self.leaks(leak_cases), strict=True):
            leak_verdicts[owner].append(verdict)
        out = []
        for k, rows in enumerate(layout):
            asked = [answers[i] for pair in rows for i in pair if i >= 0]
            counted = JudgementCount()
            counted.add([*asked, contradictions[k], *leak_verdicts[k]])
            out.append(
                UserChecks(
                    contradicts_profile=contradictions[k],
                    leaks_unknown=Verdict.any_of(leak_verdicts[k]),
                    attempted=[answers[a] if a >= 0 else Verdict.NO for a, _ in rows],
                    violated=[answers[v] if v >= 0 else Verdict.NO for _, v in rows],
                    judgements=counted,
                )
            )
        return out

    def agent_checks(self, cases: Sequence[tuple[UserGoal, str]]) -> list[list[Verdict]]:
        """``(goal, agent_line)``: per goal item, whether the line accomplishes it (always
        ``NO`` for behaviour items, which the judge is not asked about)."""
        item_cases: list[tuple[Check, GoalItem, str]] = []
        layout = []
        for goal, line in cases:
            rows = []
            for kind, item in goal.items():
                if kind in BEHAVIOUR_KINDS:
                    rows.append(-1)
                else:
                    rows.append(len(item_cases))
                    item_cases.append(("accomplishes", item, line))
            layout.append(rows)
        answers = self.item_checks(item_cases)
        return [[answers[i] if i >= 0 else Verdict.NO for i in rows] for rows in layout]

    def _judges_free_items(self, item: GoalItem) -> bool:
        """Whether this judge can decide a behaviour item it has no pattern for."""
        return True


class RuleJudge(Judge):
    """The judge that needs no language model (see the module docstring); its verdicts
    are always readable."""

    name = "rules"

    def _decide_contradicts_profile(self, cases):
        return [
            Verdict.of(bool(fact_conflicts(extract_facts(line), facts))) for facts, _, line in cases
        ]

    def _decide_contradicts_line(self, cases):
        return [
            Verdict.of(bool(fact_conflicts(extract_facts(line), extract_facts(earlier))))
            for earlier, line in cases
        ]

    def _decide_follows_intent(self, cases):
        return [Verdict.of(follows_intent(line, intent)) for line, intent in cases]

    def _decide_item_checks(self, cases):
        out = []
        for check, item, line in cases:
            if check == "attempts":
                hit = _any(item.mention, line) if item.mention else _keywords_hit(item, line)
            elif check == "accomplishes":
                if item.complete_when:
                    hit = _any(item.complete_when, line)
                else:
                    hit = bool(_DONE.search(line)) and _keywords_hit(item, line)
            else:
                hit = _any(item.violated_if, line)
            out.append(Verdict.of(hit))
        return out

    def _decide_leaks(self, cases):
        out = []
        for unknown, line in cases:
            hit = _any(unknown.patterns, line)
            if unknown.value:
                hit = hit or unknown.value.lower() in line.lower()
            out.append(Verdict.of(hit))
        return out

    def _decide_assistant_speak(self, lines):
        return [Verdict.of(bool(_ASSISTANT_SPEAK.search(line))) for line in lines]

    def _judges_free_items(self, item: GoalItem) -> bool:
        return bool(item.violated_if)


def read_yes_no(reply: str) -> Verdict:
    """The verdict in a judge's reply: its first word (letters only, case-insensitive) if
    that is ``yes`` or ``no``, else ``UNREADABLE`` (also for a reply without words)."""
    words = re.findall(r"[a-z]+", reply.lower())
    first = words[0] if words else ""
    if first == "yes":
        return Verdict.YES
    return Verdict.NO if first == "no" else Verdict.UNREADABLE


class LLMJudge(Judge):
    """Any language model as a yes/no judge (greedy, a few tokens per answer); a reply
    whose first word is not yes/no is ``UNREADABLE`` (:func:`read_yes_no`)."""

    def __init__(self, llm: LLM, max_tokens: int = 3) -> None:
        super().__init__()
        self.llm = llm
        self.name = f"llm:{llm.name}"
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0)

    def _ask(self, questions: Sequence[str]) -> list[Verdict]:
        if not questions:
            return []
        conversations = [
            [Message(role="user", content=q + "\nAnswer with yes or no.")] for q in questions
        ]
        return [read_yes_no(c.text) for c in self.llm.chat(conversations, self.params)]

    def _decide_contradicts_profile(self, cases):
        return self._ask(
            [
                f"Persona: {'; '.join(f'{k}={v}' for k, v in facts.items())}. {text}\n"
                f'This person said: "{line}"\nDoes the line contradict the persona?'
                for facts, text, line in cases
            ]
        )

    def _decide_contradicts_line(self, cases):
        return self._ask(
            [
                f'One person said, first: "{earlier}"\nand later: "{line}"\n'
                "Does the later line clearly contradict the first?"
                for earlier, line in cases
            ]
        )

    def _decide_follows_intent(self, cases):
        return self._ask(
            [
                f'A customer wrote: "{line}"\nDoes the customer {DESCRIPTIONS[intent]}?'
                for line, intent in cases
            ]
        )

    def _decide_item_checks(self, cases):
        templates = {
            "attempts": 'A customer wrote: "{line}"\nDoes the customer ask for or work towards '
            "this: {item}?",
            "accomplishes": 'A support agent wrote: "{line}"\nDoes the agent say this is done: '
            "{item}?",
            "violates": 'A customer wrote: "{line}"\nDoes the message break this rule: {item}?',
        }
        return self._ask(
            [templates[check].format(line=line, item=item.text) for check, item, line in cases]
        )

    def _decide_leaks(self, cases):
        return self._ask(
            [
                f'A customer does not know {u.text}. The customer wrote: "{line}"\n'
                f"Does the message state {u.text}?"
                for u, line in cases
            ]
        )

    def _decide_assistant_speak(self, lines):
        return self._ask(
            [
                f'"{line}"\nIs this message written like a support agent or an AI assistant '
                "rather than like a customer?"
                for line in lines
            ]
        )
