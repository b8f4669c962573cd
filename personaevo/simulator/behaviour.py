"""Behavioural fingerprints of simulated users, and the coverage metrics applied to them.

A persona set is diverse in trait space by construction; whether the *simulated users*
it conditions behave diversely is another question. Following PPol (Chopra et al. 2026,
a 19-feature dialogue fingerprint), each conversation's user lines (the stop marker
removed) become a vector of :data:`FEATURES`, every one in [0, 1]. With ``L`` the user's
lines, ``W_l`` the words of line ``l`` and ``W`` all the user's words:

* ``words_per_turn = min(1, mean_l |W_l| / 40)`` (40 words or more read as 1);
* ``front_loading = |W_first| / |W|``: how much of what the user says comes in the first
  line;
* ``question_rate``, ``pushback_rate``, ``politeness_rate``, ``disclosure_rate``,
  ``hedging_rate``, ``clarification_rate``, ``negative_emotion_rate``,
  ``exclamation_rate``: the share of lines with a question mark, a pushback marker
  ("no", "that's not", "wrong", "still", "again", ...), a politeness marker ("please",
  "thank", "sorry", ...), a stated fact (:func:`~personaevo.simulator.profiles.
  extract_facts`, or "my X is"), a hedge ("maybe", "I think", "not sure", ...), a request
  to clarify ("what do you mean", "which", "explain", ...), a word of anger or distress,
  an exclamation mark;
* ``first_person_rate = min(1, 4 · share of W that is I/me/my/mine/myself)``;
* ``lexical_diversity = distinct(W) / |W|``;
* ``shouting_rate = min(1, 10 · share of W in capitals``, two letters or more);
* ``ended_by_user``: 1 when the user ended the conversation with the stop marker.

The fingerprints live in :data:`BEHAVIOUR_SPACE`, a trait space of continuous axes on
[0, 1] (``BINS`` bins each), so the project's own metrics score them unchanged
(:func:`personaevo.metrics.score`: MC coverage and dispersion against uniform probes of
the unit cube with the calibrated radius, grid and t-way coverage, pairwise distances),
and PPol's chamfer coverage (:func:`~personaevo.metrics.geometry.chamfer_coverage`)
compares two sets of users. A conversation with no user words has no fingerprint and is
left out (counted in :attr:`BehaviourScore.skipped`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from personaevo.personas import Persona
from personaevo.simulator.conditioning import STOP
from personaevo.simulator.profiles import extract_facts
from personaevo.simulator.rollout import ConversationRecord
from personaevo.spaces import ContinuousAxis, TraitSpace

WORDS_CAP = 40.0
BINS = 3
_WORD = re.compile(r"[A-Za-z']+")
_PATTERNS = {
    "pushback_rate": r"\bno\b|\bnot\b|n't\b|\bwrong\b|\bstill\b|\bagain\b|\bbut\b|\bactually\b",
    "politeness_rate": r"\bplease\b|\bthanks?\b|\bthank you\b|\bsorry\b|\bappreciate\b|\bkindly\b",
    "disclosure_rate": r"\bmy \w+ (?:is|was|are)\b|\bi(?:'m| am) \d+\b|\bi live in\b",
    "hedging_rate": r"\bmaybe\b|\bperhaps\b|\bi think\b|\bnot sure\b|\bi guess\b|\bprobably\b",
    "clarification_rate": r"\bwhat do you mean\b|\bwhich\b|\bexplain\b|\bclarify\b|\bhow so\b",
    "negative_emotion_rate": r"\bangry\b|\bupset\b|\bannoy\w*|\bfrustrat\w*|\bterrible\b"
    r"|\bawful\b|\bridiculous\b|\bunacceptable\b|\bworst\b|\bhate\b|\bfed up\b",
}
FEATURES = (
    "words_per_turn",
    "front_loading",
    "question_rate",
    "pushback_rate",
    "politeness_rate",
    "disclosure_rate",
    "hedging_rate",
    "clarification_rate",
    "negative_emotion_rate",
    "exclamation_rate",
    "first_person_rate",
    "lexical_diversity",
    "shouting_rate",
    "ended_by_user",
)
_FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself"})

BEHAVIOUR_SPACE = TraitSpace(
    name="behaviour",
    context="Simulated users' conversational behaviour (per-conversation fingerprints).",
    axes=[ContinuousAxis(name=f, low=0.0, high=1.0, bins=BINS) for f in FEATURES],
)
"""The fingerprint space: one continuous [0, 1] axis per feature."""


def user_lines(record: ConversationRecord) -> list[str]:
    """The user's lines of a conversation, the stop marker removed."""
    return [t.text.replace(STOP, "").strip() for t in record.turns if t.role == "user"]


def _share(lines: Sequence[str], pattern: str) -> float:
    return sum(bool(re.search(pattern, line, re.IGNORECASE)) for line in lines) / len(lines)


def fingerprint(lines: Sequence[str], ended_by_user: bool = False) -> np.ndarray | None:
    """The :data:`FEATURES` vector of a user's lines (see the module docstring); None when
    the lines hold no word."""
    lines = [line for line in lines if line]
    words = [w for line in lines for w in _WORD.findall(line)]
    if not words:
        return None
    first = len(_WORD.findall(lines[0]))
    lower = [w.lower() for w in words]
    values = {
        "words_per_turn": min(1.0, len(words) / len(lines) / WORDS_CAP),
        "front_loading": first / len(words),
        "question_rate": sum("?" in line for line in lines) / len(lines),
        "exclamation_rate": sum("!" in line for line in lines) / len(lines),
        "first_person_rate": min(1.0, 4 * sum(w in _FIRST_PERSON for w in lower) / len(words)),
        "lexical_diversity": len(set(lower)) / len(words),
        "shouting_rate": min(1.0, 10 * sum(len(w) > 1 and w.isupper() for w in words) / len(words)),
        "ended_by_user": float(ended_by_user),
        **{name: _share(lines, pattern) for name, pattern in _PATTERNS.items()},
    }
    facts = sum(bool(extract_facts(line)) for line in lines) / len(lines)
    values["disclosure_rate"] = max(values["disclosure_rate"], facts)
    return np.array([values[f] for f in FEATURES], dtype=float)


def record_fingerprint(record: ConversationRecord) -> np.ndarray | None:
    """:func:`fingerprint` of a conversation's user lines."""
    return fingerprint(user_lines(record), record.stop_reason == "stop_marker")


class BehaviourScore(BaseModel):
    """The coverage metrics of one set of simulated users' fingerprints."""

    name: str
    conversations: int
    skipped: int  # conversations without user words
    metrics: dict[str, float | None]  # ScoreReport.flat() on BEHAVIOUR_SPACE
    feature_means: dict[str, float]


class BehaviourComparison(BaseModel):
    """Several sets of simulated users on the one fingerprint space."""

    space: str
    features: list[str]
    sets: list[BehaviourScore]
    chamfer: dict[str, float]  # "A vs B": PPol chamfer coverage of B's users by A's
    seed: int


def fingerprints(records: Sequence[ConversationRecord]) -> tuple[np.ndarray, int]:
    """The ``(n, len(FEATURES))`` fingerprints of the records that have one, and how many
    had none."""
    rows = [record_fingerprint(r) for r in records]
    kept = [r for r in rows if r is not None]
    matrix = np.array(kept) if kept else np.zeros((0, len(FEATURES)))
    return matrix, len(rows) - len(kept)


def _personas(matrix: np.ndarray, name: str) -> list[Persona]:
    return [
        Persona(id=f"{name}-{i}", traits={f: float(v) for f, v in zip(FEATURES, row, strict=True)})
        for i, row in enumerate(matrix)
    ]


def compare_behaviour(
    sets: Mapping[str, Sequence[ConversationRecord]], seed: int = 0, n_probes: int = 10_000
) -> BehaviourComparison:
    """Score each named set of conversations on :data:`BEHAVIOUR_SPACE` with
    :func:`personaevo.metrics.score` (seeded probes and calibration), and the chamfer
    coverage of every ordered pair of sets."""
    from personaevo.metrics import score
    from personaevo.metrics.geometry import chamfer_coverage, mean_pairwise_distance

    if not sets:
        raise ValueError("compare_behaviour needs at least one set of conversations")
    matrices, scores = {}, []
    for name, records in sets.items():
        matrix, skipped = fingerprints(records)
        if len(matrix) == 0:
            raise ValueError(f"set {name!r}: no conversation has a user word to fingerprint")
        matrices[name] = matrix
        report = score(_personas(matrix, name), BEHAVIOUR_SPACE, seed=seed, n_probes=n_probes)
        scores.append(
            BehaviourScore(
                name=name,
                conversations=len(records),
                skipped=skipped,
                metrics=report.flat(),
                feature_means={
                    f: float(v) for f, v in zip(FEATURES, matrix.mean(axis=0), strict=True)
                },
            )
        )
    chamfer = {}
    rng = np.random.default_rng([seed, 0xBE])
    for a, ma in matrices.items():
        for b, mb in matrices.items():
            if a != b:
                d_ref = mean_pairwise_distance(mb, rng)[0]
                chamfer[f"{a} vs {b}"] = chamfer_coverage(ma, mb, d_ref)
    return BehaviourComparison(
        space=BEHAVIOUR_SPACE.name,
        features=list(FEATURES),
        sets=scores,
        chamfer=chamfer,
        seed=seed,
    )


HEADLINE = (
    "mc_coverage",
    "dispersion",
    "tway_coverage.2",
    "mean_pairwise_distance",
    "min_pairwise_distance",
)


def behaviour_rows(comparison: BehaviourComparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table: one row per headline metric (with its
    direction), one column per set."""
    from personaevo.metrics.report import ScoreReport

    header = ["metric", *(s.name for s in comparison.sets)]
    rows = []
    for metric in HEADLINE:
        label = f"{metric} ({ScoreReport.direction(metric)} is better)"
        values = [s.metrics.get(metric) for s in comparison.sets]
        rows.append([label, *("n/a" if v is None else f"{v:.3f}" for v in values)])
    for pair, value in comparison.chamfer.items():
        rows.append(
            [f"chamfer coverage {pair}", f"{value:.3f}", *[""] * (len(comparison.sets) - 1)]
        )
    return header, rows
