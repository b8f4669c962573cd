"""Coverage, rarity and diversity metrics of persona populations (see ``score``)."""

from personaevo.metrics.report import (
    ConsequentialHits,
    Count,
    HullVolume,
    ReferenceMetrics,
    ScoreReport,
    score,
)

__all__ = ["ConsequentialHits", "Count", "HullVolume", "ReferenceMetrics", "ScoreReport", "score"]
