"""The run configuration of ``personaevo evolve`` (saved as ``config.yaml`` in the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from personaevo.bounds import MAX_PERSONAS_PER_RUN, MAX_SEED, MAX_WORKERS
from personaevo.errors import FileFieldsError
from personaevo.llm.config import LLMConfig
from personaevo.sandbox.models import (
    DEFAULT_CPU_MS_PER_PERSONA,
    DEFAULT_WALL_SECONDS,
    SandboxLimits,
)
from personaevo.spaces import read_structured_file, validation_problems

# 3-way combinations: pairs saturate at a hundred personas in the built-in spaces, triples
# still separate generators (and plausibility of triples trades off against reaching them).
DEFAULT_OBJECTIVES_WITH_REFERENCE = [
    "reference.support_coverage_tway.3",
    "reference.rare_hits_tway.3",
    "reference.plausibility_tway.3",
]
DEFAULT_OBJECTIVES_WITHOUT_REFERENCE = ["mc_coverage", "tway_coverage.2", "validity"]


class EvolveConfig(BaseModel):
    """Every option of an evolution run, with its default."""

    model_config = ConfigDict(extra="forbid")

    space: str = Field("customer_support", description="Built-in space name or space file.")
    reference: str | None = Field(None, description="Respondent table (needs reference_map).")
    reference_map: str | None = Field(None, description="Map of the table onto the axes.")
    builtin_reference: bool = Field(
        True, description="Use the space's own reference if none given."
    )
    seeds: list[str] = Field([], description="Seed programs; empty means the built-in seeds.")
    generations: int = Field(6, ge=1)
    population: int = Field(10, ge=2, description="Individuals per island.")
    islands: int = Field(2, ge=1)
    migration_interval: int = Field(2, ge=1, description="Generations between ring migrations.")
    migrants: int = Field(2, ge=1, description="Individuals each island sends per migration.")
    crossover_rate: float = Field(
        0.3, ge=0, le=1, description="Share of children made by crossover."
    )
    workers: int = Field(2, ge=1, le=MAX_WORKERS, description="Ray evaluation workers.")
    address: str | None = Field(None, description="Join this Ray cluster instead of starting one.")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    n: int = Field(
        100,
        ge=1,
        le=MAX_PERSONAS_PER_RUN,
        description="Personas each program writes per evaluation.",
    )
    probes: int = Field(5000, ge=100, description="MC coverage probe points.")
    objectives: list[str] = Field(
        [], description="Report metrics (ScoreReport.flat names); empty means the defaults."
    )
    eval_timeout: float = Field(
        DEFAULT_WALL_SECONDS,
        gt=0,
        description="Wall-clock seconds per program run, model calls included.",
    )
    eval_cpu_ms_per_persona: float = Field(
        DEFAULT_CPU_MS_PER_PERSONA,
        gt=0,
        description="CPU budget of a program run, in milliseconds per persona asked for "
        "(at least 1 s): a run that needs more fails as a timeout. Time spent waiting on a "
        "language model is not counted.",
    )
    assess: Literal["explicit", "questionnaire", "embedding"] = Field(
        "explicit",
        description="How trait positions are read: the declared traits, an LLM answering the "
        "space's Likert items in persona, or text embeddings against the axes' anchors.",
    )
    llm: LLMConfig | None = Field(
        None, description="Language model for LLM mutation, LLM-calling programs, assessment."
    )
    llm_mutation_rate: float = Field(
        0.5, ge=0, le=1, description="Share of mutations made by the LLM (when llm is set)."
    )
    llm_directives: list[str] = Field(
        [], description="Mutation directives for the LLM; empty means the built-in list."
    )
    llm_full_rewrite_rate: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of LLM mutations asked for a full rewrite instead of "
        "SEARCH/REPLACE edits.",
    )
    llm_mutation_max_tokens: int = Field(
        2048, ge=1, description="New tokens per LLM mutation reply (a rewrite holds a program)."
    )
    out: str = Field("", description="Run directory; empty means runs/run-YYYYmmdd-HHMMSS.")

    def limits(self, n: int | None = None) -> SandboxLimits:
        """The time limits of one program run asking for ``n`` personas (default: the
        run's ``n``): :meth:`SandboxLimits.for_personas`, the policy ``score`` and export
        use too."""
        return SandboxLimits.for_personas(
            self.n if n is None else n, self.eval_timeout, self.eval_cpu_ms_per_persona
        )

    def resolved_objectives(self, has_reference: bool) -> list[str]:
        if self.objectives:
            return list(self.objectives)
        if has_reference:
            return list(DEFAULT_OBJECTIVES_WITH_REFERENCE)
        return list(DEFAULT_OBJECTIVES_WITHOUT_REFERENCE)

    @classmethod
    def load(cls, path: str | Path) -> EvolveConfig:
        data = read_structured_file(path) or {}
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise FileFieldsError(path, validation_problems(err)) from None

    @classmethod
    def load_run(cls, root: str | Path) -> EvolveConfig:
        """The configuration of the run in ``root`` (its ``config.yaml``) with ``out``
        set to ``root``: the directory is the run, wherever it was moved or copied (a run
        written before that rule names a directory in ``out:``; it is ignored)."""
        config = cls.load(Path(root) / "config.yaml")
        return config.model_copy(update={"out": str(root)})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(), sort_keys=False), encoding="utf-8")
