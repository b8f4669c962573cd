"""Trait fidelity: do a simulated user's traits show in what it says?

A persona's declared position on each ordered axis (continuous or ordinal) of its space
is cut into a **band**: with ``u`` the unit position (:mod:`personaevo.grid`: continuous
``(x - low) / (high - low)``, ordinal ``rank / (k - 1)``)::

    band(u) = low if u < 1/3, high if u > 2/3, else mid

Categorical axes have no band and are not scored. Each conversation gives one sample:
the user's lines (stop marker removed) joined into one text, featurised as the
all-MiniLM-L6-v2 sentence embedding (384 numbers, :mod:`personaevo.assess.embedding`)
next to the behavioural fingerprint (:mod:`personaevo.simulator.behaviour`, 14 style
features in [0, 1]). Per axis, a scikit-learn pipeline (standard scaling, then a
multinomial logistic regression with balanced class weights, ``C = 1``) predicts the
band from those features.

**Scoring is by persona, never by line or conversation**: conversations of one persona
share its wording, so a classifier could recognise the persona instead of the trait.
:func:`evaluate_trait_fidelity` runs a grouped k-fold split (``GroupKFold`` on persona
ids, ``k = min(folds, personas)``): every conversation is predicted by a classifier
that saw no conversation of its persona. Per axis it reports

* ``balanced_accuracy = (1/C) sum_c (correct predictions of band c) / (samples of c)``
  over the out-of-fold predictions, ``C`` the bands present;
* ``chance = 1 / C``, what any classifier that ignores the text gets in expectation;
* a 95% interval from 1,000 resamples of the personas (cluster bootstrap, seeded).

Above chance means the band shows in behaviour. :func:`fit_trait_classifier` trains on one
set of conversations (e.g. before training) and :meth:`TraitClassifier.score` scores any
other set, so a set of a different simulator (after training) can be read by the same
classifier.

The **trait-fidelity reward** (:func:`trait_fidelity`, TRL's reward signature, registered
in :mod:`personaevo.simulator.rewards`) scores a user's line by the probability the bound
:class:`TraitScorer` gives to the persona's true band, averaged over the scored axes::

    r = (1/A) sum_a P_a(band_a(persona) | earlier lines + this line)

in [0, 1]; None for a persona the scorer has no bands for, or a line with no word.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from personaevo.errors import InputError
from personaevo.simulator.behaviour import FEATURES, fingerprint, user_lines
from personaevo.simulator.profiles import Profile
from personaevo.simulator.rollout import ConversationRecord
from personaevo.spaces import CategoricalAxis, TraitSpace

BANDS = ("low", "mid", "high")
N_BOOT = 1000


def band(u: float) -> str:
    """The band of a unit position (see the module docstring)."""
    return "low" if u < 1 / 3 else "high" if u > 2 / 3 else "mid"


def trait_bands(profile: Profile, space: TraitSpace) -> dict[str, str]:
    """The band of each ordered axis of ``space`` for a profile (axes it lacks left out)."""
    grid = space.grid
    out = {}
    for j, axis in enumerate(space.axes):
        if isinstance(axis, CategoricalAxis) or axis.name not in profile.traits:
            continue
        filled = {a.name: profile.traits.get(a.name, _any_value(a)) for a in space.axes}
        unit = grid.unit(grid.native([filled]))[0, j]
        out[axis.name] = band(float(unit))
    return out


def _any_value(axis: Any) -> Any:
    return axis.low if hasattr(axis, "low") else axis.values[0]


class Encoder:
    """Texts to feature rows: the sentence embedding beside the style fingerprint."""

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path

    def features(self, texts: Sequence[Sequence[str]]) -> np.ndarray:
        """One row per sample (a sample is a list of user lines); a sample with no word
        gets a zero fingerprint."""
        from personaevo.assess.embedding import load_encoder

        joined = [" ".join(lines) or "..." for lines in texts]
        embedded = load_encoder(self.model_path).encode(joined)
        style = [fingerprint(lines) for lines in texts]
        zeros = np.zeros(len(FEATURES))
        return np.hstack([embedded, np.array([zeros if s is None else s for s in style])])


def _samples(records: Sequence[ConversationRecord]) -> list[list[str]]:
    return [user_lines(r) for r in records]


def _labels(
    records: Sequence[ConversationRecord], space: TraitSpace
) -> tuple[list[str], dict[str, list[str]]]:
    """Axes scored (ordered axes every persona has) and each one's band per record."""
    bands = [trait_bands(r.profile, space) for r in records]
    axes = [a.name for a in space.axes if all(a.name in b for b in bands)]
    return axes, {a: [b[a] for b in bands] for a in axes}


def _pipeline(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed),
    )


def balanced_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean over the classes present in ``truth`` of the share of its samples predicted
    right (see the module docstring)."""
    t, p = np.asarray(truth), np.asarray(predicted)
    return float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))


class AxisFidelity(BaseModel):
    """One axis: balanced accuracy with its interval and chance (None when not scored)."""

    axis: str
    bands: dict[str, int]  # samples per band
    balanced_accuracy: float | None = None
    low: float | None = None
    high: float | None = None
    chance: float | None = None
    note: str = ""


class TraitFidelity(BaseModel):
    """Trait fidelity of one set of conversations (see the module docstring)."""

    simulator: str
    conversations: int
    personas: int
    folds: int
    axes: list[AxisFidelity]
    skipped_axes: dict[str, str]  # axis -> why it is not scored


def _axis_result(
    axis: str, truth: list[str], predicted: list[str] | None, groups: list[str], seed: int
) -> AxisFidelity:
    counts = {b: truth.count(b) for b in BANDS if b in truth}
    if predicted is None:
        return AxisFidelity(axis=axis, bands=counts, note="one band only: nothing to tell apart")
    t, p, g = np.asarray(truth), np.asarray(predicted), np.asarray(groups)
    persona_ids = np.unique(g)
    rows = [np.flatnonzero(g == pid) for pid in persona_ids]
    rng = np.random.default_rng([seed, 0x7F])
    boots = []
    for _ in range(N_BOOT):
        idx = np.concatenate([rows[k] for k in rng.integers(0, len(rows), len(rows))])
        boots.append(balanced_accuracy(t[idx], p[idx]))
    low, high = np.percentile(boots, [2.5, 97.5])
    return AxisFidelity(
        axis=axis,
        balanced_accuracy=balanced_accuracy(t, p),
        low=float(low),
        high=float(high),
        chance=1.0 / len(counts),
        bands=counts,
    )


def evaluate_trait_fidelity(
    records: Sequence[ConversationRecord],
    space: TraitSpace,
    folds: int = 5,
    seed: int = 0,
    encoder: Encoder | None = None,
) -> TraitFidelity:
    """Grouped k-fold trait fidelity of one set of conversations (see the module
    docstring). Needs at least two personas."""
    from sklearn.model_selection import GroupKFold

    if not records:
        raise ValueError("trait fidelity needs conversations")
    groups = [r.profile.persona_id for r in records]
    n_personas = len(set(groups))
    if n_personas < 2:
        raise ValueError(f"trait fidelity needs at least 2 personas, got {n_personas}")
    axes, labels = _labels(records, space)
    skipped = {
        a.name: "categorical axis (no band)" if isinstance(a, CategoricalAxis) else "not set"
        for a in space.axes
        if a.name not in axes
    }
    X = (encoder or Encoder()).features(_samples(records))
    k = min(folds, n_personas)
    splits = list(GroupKFold(n_splits=k).split(X, groups=groups))
    results = []
    for axis in axes:
        y = np.asarray(labels[axis])
        if len(set(y)) < 2:
            results.append(_axis_result(axis, list(y), None, groups, seed))
            continue
        predicted = np.empty(len(y), dtype=object)
        for train, test in splits:
            if len(set(y[train])) < 2:  # a fold that saw one band predicts that band
                predicted[test] = y[train][0]
                continue
            model = _pipeline(seed).fit(X[train], y[train])
            predicted[test] = model.predict(X[test])
        results.append(_axis_result(axis, list(y), [str(v) for v in predicted], groups, seed))
    return TraitFidelity(
        simulator=records[0].simulator,
        conversations=len(records),
        personas=n_personas,
        folds=k,
        axes=results,
        skipped_axes=skipped,
    )


class TraitClassifier:
    """Per-axis band classifiers fitted on one set of conversations."""

    def __init__(self, space: TraitSpace, models: dict[str, Any], encoder: Encoder) -> None:
        self.space, self.models, self.encoder = space, models, encoder

    def probabilities(self, samples: Sequence[Sequence[str]]) -> dict[str, list[dict[str, float]]]:
        """Per axis, per sample: the probability of each band."""
        X = self.encoder.features(samples)
        out = {}
        for axis, model in self.models.items():
            proba = model.predict_proba(X)
            out[axis] = [dict(zip(model.classes_, map(float, row), strict=True)) for row in proba]
        return out

    def score(self, records: Sequence[ConversationRecord], seed: int = 0) -> TraitFidelity:
        """Balanced accuracy of these classifiers on other conversations (held out)."""
        axes, labels = _labels(records, self.space)
        probs = self.probabilities(_samples(records))
        groups = [r.profile.persona_id for r in records]
        results = []
        for axis in axes:
            if axis not in self.models:
                continue
            predicted = [max(p, key=p.get) for p in probs[axis]]
            truth = labels[axis]
            ok = len(set(truth)) >= 2
            results.append(_axis_result(axis, truth, predicted if ok else None, groups, seed))
        return TraitFidelity(
            simulator=records[0].simulator if records else "",
            conversations=len(records),
            personas=len(set(groups)),
            folds=0,
            axes=results,
            skipped_axes={a.name: "no classifier" for a in self.space.axes if a.name not in axes},
        )

    def save(self, path: str | Path) -> None:
        """Pickle the fitted classifiers with the space and encoder path (scikit-learn
        objects: load only files you wrote)."""
        blob = {"space": self.space.model_dump(mode="json"), "models": self.models}
        blob["encoder"] = self.encoder.model_path
        Path(path).write_bytes(pickle.dumps(blob))

    @classmethod
    def load(cls, path: str | Path) -> TraitClassifier:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such trait classifier file")
        blob = pickle.loads(path.read_bytes())
        space = TraitSpace.model_validate(blob["space"])
        return cls(space, blob["models"], Encoder(blob["encoder"]))


def fit_trait_classifier(
    records: Sequence[ConversationRecord],
    space: TraitSpace,
    seed: int = 0,
    encoder: Encoder | None = None,
) -> TraitClassifier:
    """Fit one band classifier per ordered axis with at least two bands present."""
    axes, labels = _labels(records, space)
    encoder = encoder or Encoder()
    X = encoder.features(_samples(records))
    models = {}
    for axis in axes:
        y = np.asarray(labels[axis])
        if len(set(y)) >= 2:
            models[axis] = _pipeline(seed).fit(X, y)
    if not models:
        raise ValueError("no ordered axis has two bands among these conversations' personas")
    return TraitClassifier(space, models, encoder)


class TraitScorer:
    """What the trait-fidelity reward needs: a fitted classifier and each persona's bands."""

    def __init__(self, classifier: TraitClassifier, profiles: Sequence[Profile]) -> None:
        self.classifier = classifier
        self.bands = {p.persona_id: trait_bands(p, classifier.space) for p in profiles}

    def __call__(self, samples: Sequence[Sequence[str]], persona_ids: Sequence[str]):
        probs = self.classifier.probabilities(samples)
        out: list[float | None] = []
        for i, (lines, pid) in enumerate(zip(samples, persona_ids, strict=True)):
            bands = self.bands.get(pid, {})
            scored = [probs[a][i].get(b, 0.0) for a, b in bands.items() if a in probs]
            out.append(sum(scored) / len(scored) if scored and any(lines) else None)
        return out


def reward_binding(
    rewards: Sequence[str], classifier_path: str | None, profiles: Sequence[Profile]
) -> dict[str, dict[str, Any]]:
    """What :func:`~personaevo.simulator.rewards.reward_functions` binds (its ``bound``)
    when ``rewards`` name ``trait_fidelity``: the classifier saved at ``classifier_path``
    (``eval-simulator --save-trait-classifier``) with the bands of ``profiles``."""
    if "trait_fidelity" not in rewards:
        return {}
    if not classifier_path:
        raise InputError(
            "the trait_fidelity reward needs trait_classifier: a file written by "
            "'personaevo eval-simulator --save-trait-classifier FILE'"
        )
    scorer = TraitScorer(TraitClassifier.load(classifier_path), profiles)
    return {"trait_fidelity": {"scorer": scorer}}


def trait_fidelity(
    prompts, completions, persona_id, earlier=None, scorer: TraitScorer | None = None, **_
) -> list[float | None]:
    """The trait-fidelity reward (see the module docstring); bind ``scorer`` with
    :func:`functools.partial`."""
    from personaevo.simulator.rewards import _lines, _plain

    if scorer is None:
        raise ValueError(
            "trait_fidelity needs a scorer: functools.partial(trait_fidelity, "
            "scorer=TraitScorer(fit_trait_classifier(records, space), profiles))"
        )
    lines = [_plain(x) for x in _lines(completions)]
    before = earlier or [[] for _ in lines]
    samples = [[_plain(e) for e in old] + [x] for old, x in zip(before, lines, strict=True)]
    return scorer(samples, persona_id)
