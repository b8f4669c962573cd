"""Choosing ``k`` personas from a pool so that together they cover the space.

Every method works on the unit-cube encoding ``U`` (``(n, d)``, see :mod:`personaevo.grid`)
and starts from *required* rows (those that keep rare and consequential cells
represented, see :mod:`personaevo.export.annotate`), which are always kept and come first.

* ``maximin``: greedy farthest-point selection (:mod:`personaevo.export.maximin`): pushes
  personas to the corners and edges; the covering radius is within ``2 / 0.9`` of the
  best possible for ``k`` points.
* ``facility``: greedy facility location (:mod:`personaevo.export.facility`): a
  representative subset that keeps the pool's shape, every region represented.
* ``none``: the required rows, then the rest in a seeded random order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from personaevo.export.facility import facility_location
from personaevo.export.maximin import maximin

Method = Literal["maximin", "facility", "none"]
METHODS: tuple[str, ...] = ("maximin", "facility", "none")


def select(
    U: np.ndarray,
    k: int,
    method: Method,
    rng: np.random.Generator,
    required: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of ``min(k, n)`` distinct rows of ``U``: the ``required`` rows first, in the
    order given (all of them, even beyond ``k``), then those ``method`` adds, in order."""
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r} (use one of {', '.join(METHODS)})")
    n = len(U)
    req = np.empty(0, np.int64) if required is None else np.asarray(required, np.int64)
    _, first = np.unique(req, return_index=True)
    req = req[np.sort(first)]
    k = min(k, n)
    if len(req) >= k or n == 0:
        return req
    if method == "maximin":
        return maximin(U, k, rng, req)
    if method == "facility":
        return facility_location(U, k, rng, req)
    rest = np.setdiff1d(np.arange(n), req)
    return np.concatenate([req, rng.permutation(rest)[: k - len(req)]]).astype(np.int64)
