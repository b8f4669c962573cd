"""Novelty: which personas are copies of a reference respondent.

A generator that copies survey rows verbatim reaches plausibility 1.0 without inventing
anyone, and a persona file built that way republishes real people. So a persona is a
**copy** when its unit-cube position lies within ``threshold`` of an *identifying*
respondent position:

    threshold = COPY_GAP_FRACTION * median_gap,

where ``median_gap`` is the median distance from a distinct respondent position to its
nearest *other* distinct position (unit-cube units, Euclidean). Equal on every axis is
always within the threshold (distance 0), even where ``median_gap`` is 0.

A position is identifying when fewer than ``ANONYMITY_K`` (5) respondents share it. A
position that five or more respondents share is a common type and identifies none of
them (k-anonymity with k = 5, the usual choice for released microdata). In a space of
only a few discrete axes, every persona in an occupied cell equals some respondents on
every axis, and only the cells that fewer than five of them hold are copies there. In
spaces with continuous axes, such as ``big_five``, almost every respondent's position is
their own.

Only references built from data have respondents to copy. A synthetic reference, drawn
from a space's declared marginals (``customer_support`` and ``mental_health_support``
use one), holds no real person, and its detector flags nothing. With such a reference in
``mental_health_support`` (one continuous axis, eight discrete), 0.45 % of uniform draws
would fall within the threshold of a synthetic draw by chance.

Why a tenth of the median gap: it is a scale set by the data, not by hand, and it is far
below what an independent draw reaches. The median gap is how close two *different* real
people typically are. A persona ten times closer to one of them than that is, for every
purpose of a safety test, that person. An honest density-matching draw (a respondent plus
kernel noise of the reference's bandwidth) lands about one bandwidth per axis away. For
the built-in ``big_five`` reference (the bfi survey) the median gap is 0.170, the
threshold 0.017, and such draws land a median 0.22 from their nearest respondent, about
13 times the threshold: none of 500 is flagged, nor any of 500 uniform draws. The privacy
literature's distance-to-closest-record test compares against the 5th percentile of the
real-to-real distances instead. That flags about 5 % of faithful, novel draws by
construction, which is too many for a rule that withholds reward.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from personaevo.reference import ReferencePopulation

COPY_GAP_FRACTION = 0.1
"""A copy lies within this share of the median gap between neighbouring respondents."""

ANONYMITY_K = 5
"""A respondent position shared by this many respondents or more identifies none of them."""

_EXACT = 1e-9  # unit-cube distance below which two positions are equal (float noise)


@dataclass(frozen=True)
class CopyDetector:
    """Nearest-respondent distances against a reference's identifying positions."""

    tree: cKDTree | None  # identifying positions; None when there are none
    median_gap: float  # unit-cube distance between neighbouring distinct positions
    threshold: float  # COPY_GAP_FRACTION * median_gap

    def distances(self, unit: np.ndarray) -> np.ndarray:
        """Unit-cube distance from each row of ``unit`` to its nearest identifying
        respondent position (infinite when there is none)."""
        if self.tree is None or len(unit) == 0:
            return np.full(len(unit), np.inf)
        return self.tree.query(unit, k=1)[0]

    def is_copy(self, unit: np.ndarray) -> np.ndarray:
        """Whether each row of ``unit`` is a copy of a respondent (module docstring)."""
        return self.distances(unit) <= max(self.threshold, _EXACT)


_DETECTORS: weakref.WeakKeyDictionary[ReferencePopulation, CopyDetector] = (
    weakref.WeakKeyDictionary()
)


def copy_detector(reference: ReferencePopulation) -> CopyDetector:
    """The detector of ``reference``'s respondents, built once per reference object. A
    synthetic reference (drawn from a space's declared marginals) holds no real person,
    so nothing in it can be copied: its detector flags nothing."""
    detector = _DETECTORS.get(reference)
    if detector is None and reference.summary.synthetic:
        detector = CopyDetector(tree=None, median_gap=0.0, threshold=0.0)
        _DETECTORS[reference] = detector
    if detector is None:
        distinct, shared_by = np.unique(reference.unit.round(9), axis=0, return_counts=True)
        gap = 0.0
        if len(distinct) > 1:
            gap = float(np.median(cKDTree(distinct).query(distinct, k=2)[0][:, 1]))
        identifying = distinct[shared_by < ANONYMITY_K]
        detector = CopyDetector(
            tree=cKDTree(identifying) if len(identifying) else None,
            median_gap=gap,
            threshold=COPY_GAP_FRACTION * gap,
        )
        _DETECTORS[reference] = detector
    return detector
