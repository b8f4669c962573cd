"""The turn-level intent taxonomy (RecLLM's latent turn variable) and a CPU intent detector.

Every simulated user turn is conditioned on one intent from :class:`Intent`; the intent is
written into the simulator's input as plain text and kept as the turn's label. The
taxonomy is fixed (eight intents); :func:`parse_intent` rejects anything else with a
message that lists the valid names.

:func:`detect_intents` is the judge that needs no language model: cue patterns (below,
case-insensitive) mark which intents a line performs. A line may perform several (``"Yes,
and my order id is #W12"`` confirms and informs). It is a heuristic: it is what the CPU
reward and evaluation use, and :class:`personaevo.simulator.judges.LLMJudge` replaces it
with a yes/no question to any language model.
"""

from __future__ import annotations

import re
from enum import StrEnum

from personaevo.errors import InputError

STOP = "###STOP###"


class Intent(StrEnum):
    """What the user does in one turn."""

    INFORM = "inform"
    REQUEST = "request"
    CLARIFY = "clarify"
    CONFIRM = "confirm"
    COMPLAIN = "complain"
    EXPRESS_EMOTION = "express_emotion"
    CHANGE_GOAL = "change_goal"
    END = "end"


DESCRIPTIONS: dict[Intent, str] = {
    Intent.INFORM: "give the agent a detail it needs",
    Intent.REQUEST: "ask the agent to do something or for information",
    Intent.CLARIFY: "explain again what you meant, or ask what the agent meant",
    Intent.CONFIRM: "say yes to what the agent proposed or stated",
    Intent.COMPLAIN: "complain about the problem or the service",
    Intent.EXPRESS_EMOTION: "say how you feel",
    Intent.CHANGE_GOAL: "change what you want",
    Intent.END: f"say goodbye and end the conversation with {STOP}",
}


def parse_intent(value: str, where: str = "intent") -> Intent:
    """``value`` as an :class:`Intent`; an :class:`InputError` naming ``where`` otherwise."""
    try:
        return Intent(str(value).strip().lower())
    except ValueError:
        valid = ", ".join(i.value for i in Intent)
        raise InputError(f"{where}: unknown intent {value!r} (the taxonomy is: {valid})") from None


_CUES: dict[Intent, str] = {
    Intent.END: (
        re.escape(STOP) + r"|\b(good ?bye|bye|that'?s all|that is all|have a (good|nice) day"
        r"|nothing else|all set)\b"
    ),
    Intent.REQUEST: (
        r"\?|\b(can|could|would|will) you\b|\bplease\b|\bi(?:'d| would) like\b|\bi want\b"
        r"|\bi need\b|\bhelp me\b|\bi'?m (?:calling|writing|looking) (?:to|for|about)\b"
    ),
    Intent.INFORM: (
        r"\bmy [a-z_ ]{2,30} (?:is|was|are)\b|\bi(?:'m| am) (?:\d|a |an |from |in )|"
        r"\bi (?:live|work|bought|ordered|booked|paid|have|had|got|received)\b|#\w*\d|\b\d{3,}\b"
        r"|\bit(?:'s| is| was) (?:a|an|the|my)\b"
    ),
    Intent.CLARIFY: (
        r"\bi mean\b|\bwhat i meant\b|\bto clarify\b|\blet me explain\b|\bin other words\b"
        r"|\bwhat do you mean\b|\bthat'?s not what\b|\bjust to be clear\b|\bi meant\b"
    ),
    Intent.CONFIRM: (
        r"^\W*(yes|yeah|yep|correct|right|sure|ok|okay|exactly|confirmed|perfect|great)\b"
        r"|\bthat'?s (right|correct|fine)\b|\bsounds good\b|\bplease do\b|\bi confirm\b"
        r"|\bgo ahead\b"
    ),
    Intent.COMPLAIN: (
        r"\bunacceptable\b|\bridiculous\b|\bterrible\b|\bawful\b|\bnot happy\b|\bdisappointed\b"
        r"|\bwaste of\b|\bstill (?:not|hasn'?t|haven'?t|no)\b|\bworst\b|\bannoying\b"
        r"|\bcomplain|\bfed up\b|\bthis is (?:a )?(?:joke|mess)\b|\bnever works\b"
    ),
    Intent.EXPRESS_EMOTION: (
        r"\bi feel\b|\bi'?m (?:so |really |very )?(?:worried|upset|stressed|anxious|frustrated"
        r"|angry|sad|happy|relieved|scared|nervous|glad|grateful|confused|overwhelmed)\b"
        r"|\bthis makes me\b|\bthank goodness\b|\bi'?m at my wits\b"
    ),
    Intent.CHANGE_GOAL: (
        r"\bactually\b|\binstead\b|\bchanged my mind\b|\bon second thought\b|\bi'?d rather\b"
        r"|\bforget (?:that|it|about)\b|\bsomething (?:else|different)\b"
    ),
}
_PATTERNS = {intent: re.compile(pattern, re.IGNORECASE) for intent, pattern in _CUES.items()}


def detect_intents(text: str) -> set[Intent]:
    """The intents whose cue patterns occur in ``text`` (empty when none do)."""
    return {intent for intent, pattern in _PATTERNS.items() if pattern.search(text)}


def follows_intent(text: str, intent: Intent) -> bool:
    """Whether ``text`` performs ``intent`` by the cue patterns."""
    return bool(_PATTERNS[intent].search(text))
