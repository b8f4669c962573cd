"""Blockwise Euclidean distances on unit-cube encodings (no ``n x n`` matrices)."""

from __future__ import annotations

import numpy as np


def sq_distances(
    A: np.ndarray,
    B: np.ndarray,
    a2: np.ndarray | None = None,
    b2: np.ndarray | None = None,
) -> np.ndarray:
    """Squared distances between the rows of ``A`` and ``B``:
    ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product), clipped at 0. ``a2`` and ``b2`` are
    the rows' squared norms when already known."""
    a2 = (A * A).sum(axis=1) if a2 is None else a2
    b2 = (B * B).sum(axis=1) if b2 is None else b2
    D = A @ B.T
    D *= -2.0
    D += a2[:, None]
    D += b2[None, :]
    np.maximum(D, 0.0, out=D)
    return D
