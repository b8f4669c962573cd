"""Greedy facility location for large pools: a representative subset of the pool.

Maximises ``F(S) = sum_p max_{s in S} sim(p, s)`` over the pool points ``p``, with
``sim(p, s) = exp(-||p - s||^2 / (2 h^2))`` on the unit-cube encoding and ``h`` the median
distance from a point to its ``ceil(n / k)``-th nearest neighbour (the spacing a
``k``-point subset has). Facility location keeps the pool's shape: dense regions get
more points, as in the pool, with every region represented.

Scaling to hundreds of thousands of points (partitioned greedy, as in GreeDi,
Mirzasoleiman et al., 2013): the pool is split into parts of at most ``part_size``
points by recursive median cuts along the widest axis (boxes, so parts are spatially
coherent), each part gets a share of ``k`` proportional to its size (raised to its
required points), and each part is solved on its own dense similarity matrix. Within a
part each step is *stochastic greedy* (Mirzasoleiman et al., 2015, "Lazier than lazy
greedy"): the best of ``(n_part / k_part) ln(1 / eps)`` random candidates, which
reaches ``1 - 1/e - eps`` of the part's optimum in expectation. Parts are processed in
groups, one greedy step for every part of a group at once, so the Python loop runs
``max quota`` times per group rather than once per pick.
"""

from __future__ import annotations

import math

import numpy as np

from personaevo.export.geometry import sq_distances


def facility_location(
    U: np.ndarray,
    k: int,
    rng: np.random.Generator,
    required: np.ndarray,
    part_size: int = 1024,
    eps: float = 0.01,
    group_bytes: int = 96 << 20,
) -> np.ndarray:
    """``required`` then up to ``k - len(required)`` more rows of ``U``, the later ones
    in decreasing order of their marginal gain."""
    n = len(U)
    U = np.ascontiguousarray(U, dtype=np.float64)
    members = median_parts(U, part_size)
    is_required = np.zeros(n, dtype=bool)
    is_required[required] = True
    sizes = np.array([len(m) for m in members])
    need = np.array([int(is_required[m].sum()) for m in members])
    quota = rebalance(apportion(sizes, k), need, k)
    h = bandwidth(U, members, n / k, rng)
    P = int(sizes.max())
    group = max(1, group_bytes // (4 * P * P))
    picked, gains = [], []
    for lo in range(0, len(members), group):
        ids = range(lo, min(lo + group, len(members)))
        rows, gain = _greedy_group(
            U, [members[p] for p in ids], quota[list(ids)], is_required, h, rng, eps
        )
        picked.append(rows)
        gains.append(gain)
    order = np.concatenate(picked) if picked else np.empty(0, np.int64)
    gain = np.concatenate(gains) if gains else np.empty(0)
    extra = order[np.argsort(-gain, kind="stable")]
    return np.concatenate([np.asarray(required, np.int64), extra]).astype(np.int64)


def median_parts(U: np.ndarray, part_size: int) -> list[np.ndarray]:
    """Row indices of parts of at most ``part_size`` rows, from recursive median cuts
    along each part's widest axis (a k-d tree's leaves)."""
    parts, todo = [], [np.arange(len(U))]
    while todo:
        rows = todo.pop()
        if len(rows) <= part_size:
            parts.append(rows)
            continue
        X = U[rows]
        axis = int(np.argmax(X.max(axis=0) - X.min(axis=0)))
        half = len(rows) // 2
        order = np.argpartition(X[:, axis], half)
        todo += [rows[order[half:]], rows[order[:half]]]
    return parts


def apportion(sizes: np.ndarray, k: int) -> np.ndarray:
    """Integer shares of ``k`` proportional to ``sizes`` (largest remainder), capped at
    each size."""
    exact = sizes / sizes.sum() * k
    quota = np.floor(exact).astype(np.int64)
    short = k - int(quota.sum())
    if short > 0:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    return np.minimum(quota, sizes)


def rebalance(quota: np.ndarray, need: np.ndarray, k: int) -> np.ndarray:
    """Raise each quota to its part's required rows, taking the excess one at a time
    from the parts with the most spare quota, so that the total stays ``k``."""
    quota = np.maximum(quota, need)
    excess = int(quota.sum()) - k
    while excess > 0:
        spare = quota - need
        parts = np.argsort(-spare, kind="stable")[:excess]
        parts = parts[spare[parts] > 0]
        if len(parts) == 0:
            break
        quota[parts] -= 1
        excess -= len(parts)
    return quota


def bandwidth(
    U: np.ndarray, members: list[np.ndarray], ratio: float, rng: np.random.Generator
) -> float:
    """Median distance from a point to its ``ceil(ratio)``-th nearest neighbour within
    its part, over about 2,000 sampled points (200 per part)."""
    j = max(1, math.ceil(ratio))
    values: list[np.ndarray] = []
    order = rng.permutation(len(members))
    for p in order:
        rows = members[p]
        if len(rows) <= j:
            continue
        sample = rows if len(rows) <= 200 else rng.choice(rows, 200, replace=False)
        D = sq_distances(U[sample], U[rows])
        values.append(np.sqrt(np.partition(D, j, axis=1)[:, j]))
        if sum(len(v) for v in values) >= 2000:
            break
    if not values:
        return 1.0
    h = float(np.median(np.concatenate(values)))
    return h if h > 0 else 1.0


def _greedy_group(
    U: np.ndarray,
    members: list[np.ndarray],
    quota: np.ndarray,
    is_required: np.ndarray,
    h: float,
    rng: np.random.Generator,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic greedy on several parts at once; returns the pool rows picked (required
    rows excluded) and their gains. Parts are padded to one size ``P``: a padded slot
    has zero similarity to everything, so it never adds gain and is never picked."""
    G, P = len(members), max(len(m) for m in members)
    S = np.zeros((G, P, P), dtype=np.float32)
    available = np.zeros((G, P), dtype=np.int64)  # available slots first, `live` of them
    live = np.zeros(G, dtype=np.int64)
    covered = np.zeros((G, P), dtype=np.float32)
    left = np.zeros(G, dtype=np.int64)  # picks still to make
    samples = np.ones(G, dtype=np.int64)
    for g, rows in enumerate(members):
        X = U[rows]
        S[g, : len(rows), : len(rows)] = np.exp(sq_distances(X, X) * (-0.5 / (h * h)))
        req = is_required[rows]
        for j in np.flatnonzero(req):
            np.maximum(covered[g], S[g, j], out=covered[g])
        free = np.flatnonzero(~req)
        available[g, : len(free)] = free
        live[g] = len(free)
        left[g] = max(0, int(quota[g]) - int(req.sum()))
        if left[g]:
            samples[g] = max(1, math.ceil(len(rows) / quota[g] * math.log(1 / eps)))
    s = int(samples.max())
    picked_rows, picked_gain = [], []
    g_all = np.arange(G)
    while True:
        active = g_all[(left > 0) & (live > 0)]
        if len(active) == 0:
            break
        # s draws with replacement per part among its live slots (a part whose own
        # sample size is smaller just repeats candidates)
        draw = (rng.random((len(active), s)) * live[active, None]).astype(np.int64)
        cand = available[active[:, None], draw]  # (a, s) slots
        rows_S = S[active[:, None], cand]  # (a, s, P)
        gain = np.maximum(rows_S - covered[active, None, :], 0.0).sum(axis=2)
        best = np.argmax(gain, axis=1)
        slot = cand[np.arange(len(active)), best]
        covered[active] = np.maximum(covered[active], S[active, slot])
        picked_gain.append(gain[np.arange(len(active)), best])
        picked_rows.append(np.array([members[g][j] for g, j in zip(active, slot, strict=True)]))
        # remove the picked slot: swap it with the last live slot
        pos = draw[np.arange(len(active)), best]
        last = live[active] - 1
        available[active, pos] = available[active, last]
        available[active, last] = slot
        live[active] -= 1
        left[active] -= 1
    if not picked_rows:
        return np.empty(0, np.int64), np.empty(0)
    return np.concatenate(picked_rows).astype(np.int64), np.concatenate(picked_gain)
