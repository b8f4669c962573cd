"""The export summary: what was exported, from what, and how it compares (a pydantic
model, written as ``<file name>.export.json`` beside the personas and read by the report)."""

from __future__ import annotations

from pydantic import BaseModel

from personaevo.assess import AssessmentSummary
from personaevo.export.pool import ProgramYield
from personaevo.metrics import ScoreReport


class TierCount(BaseModel):
    """Entries of one kind the pool reached, and how many kept a persona."""

    reached: int
    kept: int


class Stage(BaseModel):
    """One stage of an export: wall and CPU seconds, and the largest resident memory of
    the exporting process so far (``ru_maxrss``)."""

    name: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


class ConsequentialCount(BaseModel):
    """Personas inside one consequential configuration."""

    name: str
    description: str = ""
    pool: int
    exported: int
    density_matched: int | None = None


class RareCount(BaseModel):
    """Rare entries (cells, or t-way combinations) of the reference: how many there are,
    how many the pool, the exported set and the density-matched sample reach."""

    kind: str
    total: int
    pool: int
    exported: int
    density_matched: int | None = None


class ExportSummary(BaseModel):
    """Everything about one export (see :func:`personaevo.export.export_personas`)."""

    created: str
    run: str
    output: str
    card: str
    format: str
    space: str
    space_version: str
    space_context: str
    reference: str | None
    reference_respondents: int | None
    rare_mass_fraction: float | None
    requested: int
    exported: int
    pool_requested: int
    pool: int
    select: str
    seed: int
    chunk: int
    tway: int
    assess: str = "explicit"  # how positions were read: declared traits, or measured
    assessment: AssessmentSummary | None = None  # the measurement of the pool, when measured
    shortfall: str | None = None
    copies: int = 0  # exported personas that copy a reference respondent (metrics.novelty)
    copies_dropped: int = 0  # copies removed from the pool before selection (drop_copies)
    programs: list[ProgramYield]
    required: dict[str, TierCount]
    rare: list[RareCount]
    consequential: list[ConsequentialCount]
    unreached_rare_kind: str = ""
    unreached_rare: list[str] = []
    exported_metrics: ScoreReport
    density_matched_metrics: ScoreReport | None = None
    stages: list[Stage] = []
    sandbox_max_rss_mb: float | None = None
    notes: list[str] = []

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)
