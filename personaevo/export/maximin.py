"""Greedy farthest-point (maximin) selection for large pools.

With ``m(p) = min_s ||p - s||`` the distance from pool point ``p`` to its nearest chosen
point, every point added has ``m(p) >= gamma * max_q m(q)`` when it is added (Gonzalez's
greedy has ``gamma = 1``). Points are taken in distance bands: the band
``tau = gamma * max m`` accepts the candidates with ``m >= tau`` in decreasing order of
``m``, skipping any within ``tau`` of one accepted before it. The chosen set is
``tau``-separated and, once a band is complete, covers the pool within ``tau / gamma``,
so its covering radius is within ``2 / gamma`` of the best possible for ``k`` points
(Gonzalez's bound is 2).

Cost: ``m`` is kept as an upper bound per point and made exact (a nearest-neighbour
query, pruned at the bound, against a k-d tree of the chosen points) only where it may
reach the next band; inside a band the candidates are checked in blocks against the
band's earlier points (a k-d tree rebuilt every few blocks plus direct distances since)
and against each other (one ``block x block`` matrix). Memory is ``O(n + block^2)``:
no ``n x k`` matrix is ever built. The output is in selection order, so every prefix
is itself a spread-out subset.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from personaevo.export.geometry import sq_distances


def maximin(
    U: np.ndarray,
    k: int,
    rng: np.random.Generator,
    required: np.ndarray,
    gamma: float = 0.9,
    block: int = 512,
) -> np.ndarray:
    """``required`` (or one seeded random row when there is none), then rows chosen by
    banded greedy farthest-point selection until there are ``k`` (module docstring)."""
    n = len(U)
    U = np.ascontiguousarray(U, dtype=np.float64)
    chosen = [int(i) for i in required] or [int(rng.integers(n))]
    start = np.asarray(chosen)
    m = (
        cKDTree(U[start]).query(U, k=1, workers=-1)[0]
        if len(start) > 1
        else np.sqrt(sq_distances(U, U[start]).ravel())
    )
    # m[p] is exact for chosen[:stamp[p]] and an upper bound for the chosen set
    stamp = np.full(n, len(chosen))
    is_chosen = np.zeros(n, dtype=bool)
    previous = len(chosen)  # chosen count when the previous band started
    while len(chosen) < k:
        is_chosen[chosen] = True
        m[is_chosen] = -1.0
        trees: dict[int, cKDTree] = {}
        while True:  # make m exact wherever it may reach the band
            current = stamp == len(chosen)
            top = float(m[current].max(initial=-1.0))
            stale = ~current & ~is_chosen
            if top < 0:  # nothing exact yet: the largest upper bounds first
                idx = np.flatnonzero(stale)
                if len(idx) > block:
                    idx = idx[np.argpartition(-m[idx], block - 1)[:block]]
            else:
                idx = np.flatnonzero(stale & (m >= gamma * top))
            if len(idx) == 0:
                break
            recent = stamp[idx] >= previous  # only the previous band's points are missing
            for part, lo in ((idx[recent], previous), (idx[~recent], 0)):
                if len(part) == 0:
                    continue
                if lo not in trees:
                    trees[lo] = cKDTree(U[chosen[lo:]])
                bound = float(m[part].max()) * (1 + 1e-9)  # nothing farther can lower m
                dist, _ = trees[lo].query(U[part], k=1, distance_upper_bound=bound, workers=-1)
                m[part] = np.minimum(m[part], dist)
            stamp[idx] = len(chosen)
        tau = gamma * float(m.max())
        if tau <= 0.0:  # only duplicates of chosen points are left
            break
        cand = np.flatnonzero((stamp == len(chosen)) & (m >= tau))
        cand = cand[np.lexsort((cand, -np.round(m[cand], 9)))]  # decreasing m, then index
        previous = len(chosen)
        _band(U, m, stamp, cand, tau, k, chosen, block)
    return np.asarray(chosen[:k], dtype=np.int64)


def _band(
    U: np.ndarray,
    m: np.ndarray,
    stamp: np.ndarray,
    cand: np.ndarray,
    tau: float,
    k: int,
    chosen: list[int],
    block: int,
) -> None:
    """Accept, in order, the candidates at least ``tau`` from every point accepted before
    them in this band (all of them are at least ``tau`` from the earlier chosen points),
    until ``chosen`` holds ``k``; the others' ``m`` then also counts the band's points
    (and stays exact: ``stamp`` moves on). Earlier acceptances are looked up in a k-d
    tree rebuilt every ``4 * block`` acceptances and, since the last rebuild, by direct
    distances."""
    accepted: list[int] = []
    tree, in_tree = None, 0
    t2 = tau * tau
    for lo in range(0, len(cand), block):
        rows = cand[lo : lo + block]
        X = U[rows]
        x2 = (X * X).sum(axis=1)
        near = np.full(len(rows), np.inf)  # squared distance to this band's points
        if tree is not None:
            bound = float(m[rows].max()) * (1 + 1e-9)  # keeps m exact, not just >= tau
            dist, _ = tree.query(X, k=1, distance_upper_bound=bound, workers=-1)
            near = np.minimum(near, dist * dist)
        if len(accepted) > in_tree:
            R = U[accepted[in_tree:]]
            near = np.minimum(near, sq_distances(X, R, x2, (R * R).sum(axis=1)).min(axis=1))
        free = near >= t2
        idx = np.flatnonzero(free)
        sq = sq_distances(X[idx], X[idx], x2[idx], x2[idx])
        blocked = np.zeros(len(idx), dtype=bool)
        taken = []
        for i in range(len(idx)):
            if not blocked[i]:
                taken.append(i)
                accepted.append(int(rows[idx[i]]))
                chosen.append(int(rows[idx[i]]))
                if len(chosen) >= k:
                    return
                blocked |= sq[i] < t2
        if taken:
            new = idx[taken]
            near = np.minimum(near, sq_distances(X, X[new], x2, x2[new]).min(axis=1))
            near[new] = np.inf
        m[rows] = np.minimum(m[rows], np.sqrt(near))
        stamp[rows] = len(chosen)
        if len(accepted) - in_tree >= 4 * block:
            tree, in_tree = cKDTree(U[accepted]), len(accepted)
