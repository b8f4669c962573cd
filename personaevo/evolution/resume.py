"""What a resumed run may change: where it runs and how long, never what it computes.

``generations`` may grow (a finished run extended), ``workers`` and ``address`` may
change (a lost node, a bigger cluster): the loop's choices come from one seeded generator
and the cache, so the result does not depend on them. Everything else fixes the result
(the seed, ``n``, the space, the reference, the objectives, the operators' rates, the
limits, the seeds, the language model), and a request to change it is refused in one line
that says why. The one exception in ``llm``: an ``openai:URL`` backend may move to
another URL serving the same model with the same sampling.
"""

from __future__ import annotations

from typing import Any

from personaevo.errors import InputError
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.store import recorded_config

CHANGEABLE = ("generations", "workers", "address")


class RunComplete(Exception):  # noqa: N818 (not an error: the run is done)
    """``--resume`` of a run that has already run every generation asked for: there is
    nothing to do. Raised before Ray starts; ``str(err)`` says so and how to extend it."""

    def __init__(self, path: str, generations: int) -> None:
        self.path = path
        self.generations = generations
        super().__init__(
            f"{path}: complete: all {generations} generations have run, so there is nothing "
            f"to resume; --generations N (above {generations}) extends it, and "
            f"personaevo export --run {path} exports its front ({path}/front)"
        )


REASONS = {
    "seed": "the seed fixes every random choice of the run, so another seed is another run",
    "n": "every program was scored on that many personas; another n changes every score",
    "space": "every score was measured on that space",
    "reference": "the reference-based objectives were measured against that reference",
    "reference_map": "the reference-based objectives were measured against that reference",
    "builtin_reference": "the reference-based objectives were measured against that reference",
    "objectives": "the populations were selected on those objectives",
    "seeds": "the run started from those seed programs",
    "probes": "the coverage scores were measured with that many probe points",
    "assess": "every position was read that way",
    "eval_timeout": "the time limit decided which programs failed",
    "eval_cpu_ms_per_persona": "the time limit decided which programs failed",
    "llm": "the language model's answers are part of the run's results",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _llm_moved(old: Any, new: Any) -> bool:
    """True when only the URL of an ``openai:`` backend changed."""
    if old is None or new is None:
        return False
    if not (old.backend.startswith("openai:") and new.backend.startswith("openai:")):
        return False
    return old.model_copy(update={"backend": new.backend}) == new


def resume_changes(
    recorded: EvolveConfig, requested: EvolveConfig, finished: int
) -> tuple[EvolveConfig, list[str]]:
    """The configuration to resume with, and one line per change; an
    :class:`InputError` for a change that would alter the result, or for fewer
    ``generations`` than the run has ``finished``."""
    old = recorded_config(recorded)
    new = recorded_config(requested)
    changes: list[str] = []
    updates: dict[str, Any] = {}
    for name in EvolveConfig.model_fields:
        if name == "out":
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if name == "llm" and _llm_moved(before, after):
            changes.append(f"llm {before.backend} -> {after.backend} (same model)")
            updates[name] = after
            continue
        if name not in CHANGEABLE:
            reason = REASONS.get(name, "it changes what the run computes")
            raise InputError(
                f"{_flag(name)}: the run was made with {name} {before!r}, not {after!r}, "
                f"and cannot change on resume: {reason} (start a new run with --out)"
            )
        if name == "generations" and after < finished:
            raise InputError(
                f"--generations {after}: the run has already finished {finished} "
                f"generations (give at least {finished}, or leave it out)"
            )
        changes.append(f"{name} {before!r} -> {after!r}")
        updates[name] = after
    return recorded.model_copy(update=updates), changes
