"""Persona difficulty and the curriculum that samples training personas by it.

**Absolute difficulty** of a persona, in [0, 1]: its ``rarity`` when the persona file
carries one (an export's rarity score), otherwise the mean over axes of how unusual its
value is:

* an axis with a declared marginal: ``1 - p(value) / max p`` (discrete weights; for a
  continuous normal marginal ``1 - exp(-z^2 / 2)`` with ``z = (x - mean) / sd``; for a
  beta marginal, the density ratio on a 200-point grid; a uniform one gives 0);
* an ordered axis without a marginal: the distance from the middle, ``|2u - 1|`` with
  ``u`` the unit-cube coordinate (:mod:`personaevo.grid`); a categorical one: 1/2.

Without a space (a persona file read without ``--space``), the marginals are the
population's own: for each trait, ``1 - f(value) / max f`` with ``f`` the value's share
among the personas that have the trait (numbers are cut into quintiles first), averaged
over the persona's traits (:func:`population_difficulty`).

**Prior difficulty: ranks within the population.** Absolute scores saturate: in a
coverage-optimised export most personas are rare (47 of 60 had rarity >= 0.99), so they
would all sit at one difficulty. :func:`prior_difficulty` therefore ranks: with ``a`` the
absolute difficulty and ``b`` the population's own unusualness (:func:`population_difficulty`,
which always separates the personas of a population from each other),

    prior_i = (rank_q(a)_i + rank_q(b)_i) / 2

where ``rank_q`` is the rank quantile in [0, 1] (ties share their mean rank). The
curriculum then ranks ``prior`` again with every tie broken by a seeded permutation, so
``n`` personas get the ``n`` distinct quantiles ``0, 1/(n-1), ..., 1``.

**Measured difficulty.** Every rollout of the training policy tells how hard a persona
is for it: a rollout *fails* when the persona's goal is not met by its end (some task
objective or requirement not Complete; :func:`goal_failed`). With ``f_i`` failures in
``m_i`` rollouts of persona ``i`` and ``q_i`` its prior quantile, the difficulty used is

    d_i = (k q_i + f_i) / (k + m_i),    k = PRIOR_ROLLOUTS = 4

the failure rate shrunk towards the prior as if the prior were ``k`` pseudo-rollouts: a
persona never played keeps its prior rank, and after ``m`` rollouts the measurement
weighs ``m / (k + m)``. The schedule reads the rank quantiles of ``d`` (ties broken by
the prior), so its weights always spread over the whole range.

**Schedules.** At training progress ``t`` in [0, 1] a persona of quantile ``q`` is drawn
with weight ``w = exp(-(q - c(t))^2 / (2 s^2))``, ``s = 0.15``, around a centre that moves
on ZeroSearch's exponential curriculum ``g(t) = (b^t - 1) / (b - 1)``, ``b = 4``:

* ``moderate-first``: ``c(t) = 0.5 + 0.5 g(t)`` (median difficulty first, the hardest last);
* ``hardest-first``: ``c(t) = 1 - 0.5 g(t)`` (the hardest first, the median last);
* ``uniform``: every persona weighs the same (difficulty is still measured and logged).

RLVER found that moderately difficult simulated users trained better agents than the
hardest ones; ``experiments/simulator_grpo.py`` compares the three schedules here.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import rankdata

from personaevo.simulator.profiles import Profile
from personaevo.spaces import ContinuousAxis, OrdinalAxis, TraitSpace

Schedule = Literal["uniform", "moderate-first", "hardest-first"]
SCHEDULES: tuple[str, ...] = ("uniform", "moderate-first", "hardest-first")
WIDTH = 0.15
BASE = 4.0


def trait_difficulty(traits: dict, space: TraitSpace) -> float:
    """Mean per-axis unusualness of ``traits`` (see the module docstring)."""
    scores = []
    for axis in space.axes:
        if axis.name not in traits:
            continue
        value = traits[axis.name]
        marginal = axis.marginal
        if isinstance(axis, ContinuousAxis):
            x = float(value)
            if marginal is None:
                scores.append(abs(2 * (x - axis.low) / (axis.high - axis.low) - 1))
            elif marginal.dist == "normal":
                z = (x - marginal.mean) / marginal.sd
                scores.append(1 - math.exp(-z * z / 2))
            elif marginal.dist == "beta":
                grid = np.linspace(0.0025, 0.9975, 200)
                pdf = beta_dist.pdf(grid, marginal.a, marginal.b)
                u = min(max((x - axis.low) / (axis.high - axis.low), 0.0025), 0.9975)
                scores.append(1 - float(beta_dist.pdf(u, marginal.a, marginal.b) / pdf.max()))
            else:
                scores.append(0.0)
        elif marginal is not None:
            weights = marginal.weights
            top = max(weights.values())
            scores.append(1 - weights.get(str(value), 0.0) / top if top > 0 else 0.0)
        elif isinstance(axis, OrdinalAxis):
            i = axis.index(value)
            k = len(axis.values)
            scores.append(abs(2 * (i or 0) / (k - 1) - 1) if k > 1 else 0.0)
        else:
            scores.append(0.5)
    return float(np.mean(scores)) if scores else 0.5


def difficulty(profile: Profile, space: TraitSpace | None) -> float:
    """``rarity`` when known, else :func:`trait_difficulty` (0.5 without a space)."""
    if profile.rarity is not None:
        return float(min(max(profile.rarity, 0.0), 1.0))
    return trait_difficulty(profile.traits, space) if space is not None else 0.5


def population_difficulty(traits: list[dict]) -> list[float]:
    """Each persona's mean per-trait unusualness within ``traits`` (see the module
    docstring)."""
    keys = sorted({k for t in traits for k in t})
    columns: dict[str, list] = {}
    for key in keys:
        values = [t.get(key) for t in traits]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers and len(numbers) == sum(v is not None for v in values):
            edges = np.quantile(numbers, [0.2, 0.4, 0.6, 0.8])
            values = [None if v is None else int(np.searchsorted(edges, v)) for v in values]
        columns[key] = [None if v is None else str(v) for v in values]
    scores = np.zeros(len(traits))
    counts = np.zeros(len(traits))
    for column in columns.values():
        freq: dict[str, int] = {}
        for v in column:
            if v is not None:
                freq[v] = freq.get(v, 0) + 1
        top = max(freq.values(), default=1)
        for i, v in enumerate(column):
            if v is not None:
                scores[i] += 1 - freq[v] / top
                counts[i] += 1
    return [float(s / c) if c else 0.5 for s, c in zip(scores, counts, strict=True)]


def difficulties(profiles: list[Profile], space: TraitSpace | None) -> list[float]:
    """:func:`difficulty` of every profile; without a space, the population's own
    marginals stand in for the declared ones."""
    if space is not None:
        return [difficulty(p, space) for p in profiles]
    fallback = population_difficulty([p.traits for p in profiles])
    return [
        float(min(max(p.rarity, 0.0), 1.0)) if p.rarity is not None else f
        for p, f in zip(profiles, fallback, strict=True)
    ]


def centre(schedule: Schedule, t: float) -> float | None:
    """The target rank quantile at progress ``t`` (None for ``uniform``)."""
    g = (BASE ** min(max(t, 0.0), 1.0) - 1) / (BASE - 1)
    if schedule == "moderate-first":
        return 0.5 + 0.5 * g
    if schedule == "hardest-first":
        return 1.0 - 0.5 * g
    if schedule == "uniform":
        return None
    raise ValueError(f"unknown curriculum {schedule!r} (use one of {', '.join(SCHEDULES)})")


PRIOR_ROLLOUTS = 4.0


def rank_quantiles(values, tiebreak=None) -> np.ndarray:
    """Rank quantiles in [0, 1] of ``values``. Without ``tiebreak`` ties share their mean
    rank; with it (an array of the same length) ties are ordered by it, then by
    position, so every quantile is distinct."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return x
    if n == 1:
        return np.ones(1)
    if tiebreak is None:
        return (rankdata(x) - 1) / (n - 1)
    order = np.lexsort((np.arange(n), np.asarray(tiebreak, dtype=float), x))
    q = np.empty(n)
    q[order] = np.arange(n) / (n - 1)
    return q


def prior_difficulty(profiles: list[Profile], space: TraitSpace | None) -> list[float]:
    """``(rank_q(absolute) + rank_q(population)) / 2`` per profile (module docstring)."""
    absolute = difficulties(profiles, space)
    within = population_difficulty([p.traits for p in profiles])
    both = (rank_quantiles(absolute) + rank_quantiles(within)) / 2
    return [float(v) for v in both]


def goal_failed(record) -> bool:
    """Whether a rollout (a :class:`~personaevo.simulator.rollout.ConversationRecord`)
    ended with some task objective or requirement not Complete."""
    if not record.turns:
        return True
    return not record.state_at(record.turns[-1].statuses or []).tasks_complete()


class Curriculum:
    """Draws personas by difficulty on a schedule; difficulty starts at the prior rank
    and follows the policy's measured failures (see the module docstring)."""

    def __init__(
        self,
        difficulties: list[float],
        schedule: Schedule = "uniform",
        prior_rollouts: float = PRIOR_ROLLOUTS,
        seed: int = 0,
    ) -> None:
        if not difficulties:
            raise ValueError("a curriculum needs at least one persona")
        if prior_rollouts <= 0:
            raise ValueError(f"prior_rollouts must be positive, got {prior_rollouts}")
        centre(schedule, 0.0)  # validates the name
        self.schedule = schedule
        self.prior_rollouts = float(prior_rollouts)
        n = len(difficulties)
        jitter = np.random.default_rng([seed, 0xC0]).permutation(n)
        self.prior = rank_quantiles(difficulties, tiebreak=jitter)
        self.rollouts = np.zeros(n)
        self.failures = np.zeros(n)

    def record(self, index: int, failed: bool) -> None:
        """Count one rollout of persona ``index`` (failed or not)."""
        self.rollouts[index] += 1
        self.failures[index] += float(failed)

    @property
    def difficulty(self) -> np.ndarray:
        """``d_i = (k q_i + f_i) / (k + m_i)`` (module docstring), in [0, 1]."""
        k = self.prior_rollouts
        return (k * self.prior + self.failures) / (k + self.rollouts)

    @property
    def quantiles(self) -> np.ndarray:
        """Rank quantiles of :attr:`difficulty`, ties broken by the prior: distinct."""
        return rank_quantiles(self.difficulty, tiebreak=self.prior)

    def weights(self, t: float) -> np.ndarray:
        """Sampling probabilities at progress ``t`` (they sum to 1)."""
        c = centre(self.schedule, t)
        q = self.quantiles
        w = np.ones(len(q)) if c is None else np.exp(-((q - c) ** 2) / (2 * WIDTH**2))
        return w / w.sum()

    def sample(self, t: float, k: int, rng: np.random.Generator) -> np.ndarray:
        """``k`` persona indices drawn with replacement at progress ``t``."""
        return rng.choice(len(self.prior), size=k, replace=True, p=self.weights(t))
