"""The prompt of the LLM-driven mutation: what the model sees about a parent program.

One prompt holds, in order: the trait space, the generator contract, the run's objectives,
the parent program, its metrics report (compact), feedback (how it failed, its weakest
metrics relative to the Pareto front, rare combinations of the reference population and
how many of them it reached, consequential configurations it missed), one or two
inspiration programs from the front, one mutation directive, and the reply format
(SEARCH/REPLACE blocks, or a full rewrite in a fenced block).

"Weakest relative to the front": for each objective and headline metric ``m`` with
parent value ``v`` and best front value ``b`` (in the metric's better direction), the
shortfall is ``1 - v/b`` for higher-is-better metrics and ``1 - b/v`` for lower-is-better
ones (both in [0, 1] when the front is better); the largest shortfalls are listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personaevo import programs
from personaevo.evaluate import Evaluation
from personaevo.llm.base import Message
from personaevo.metrics import ScoreReport
from personaevo.reference import ReferencePopulation
from personaevo.spaces import ContinuousAxis, TraitSpace

DEFAULT_DIRECTIVES: tuple[str, ...] = (
    "Push axes to their extremes: place a larger share of personas at the low and high "
    "ends of each axis, and at crossings of several extremes, while every persona stays "
    "feasible (check it with space.is_feasible).",
    "Generate in staggered batches: write the personas in several batches and let each "
    "batch fill the regions the earlier batches left empty (for example, reject a "
    "candidate that lands too close to a persona already placed).",
    "Target the rare combinations the parent missed: make sure some personas land on the "
    "rare combinations listed in the feedback (and others like them), then spread the rest.",
    "Over-generate, then prune by distance: draw several times more feasible candidates "
    "than needed and keep a subset that maximises the minimum distance between personas "
    "(greedy farthest-point selection in the unit cube).",
    "Mix two placement strategies: place part of the personas with one method (a "
    "low-discrepancy sequence, say) and the rest with another (axis extremes, a covering "
    "array over the bins, or the sparse edges of space.reference_sample).",
    "Balance the discrete axes: make every level of every ordinal and categorical axis "
    "appear about equally often, and every feasible pair of levels of two axes appear at "
    "least once.",
    "Make it robust: respect every constraint, bound every loop, never raise, and return "
    "exactly n distinct personas, even in a space with many constraints.",
    "Stay plausible but reach the edges: keep most personas where the reference sample "
    "has respondents (space.reference_sample.unit), and push a share into its sparse "
    "regions.",
)
"""The built-in mutation directives; one is drawn (seeded) for each prompt."""

SYSTEM_PROMPT = (
    "You are an expert Python programmer who improves persona-generator programs. A "
    "generator places personas in a trait space; it is scored on how well its personas "
    "cover the space and reach rare but real configurations, at high validity. Follow the "
    "requested reply format exactly."
)

HEADLINE_METRICS = ("validity", "mc_coverage", "tway_coverage.2", "tway_coverage.3")

DIFF_FORMAT = """Reply with one or more SEARCH/REPLACE blocks that edit the parent program:

<<<<<<< SEARCH
lines copied exactly from the parent program
=======
the new lines that replace them
>>>>>>> REPLACE

Every SEARCH text must occur exactly once in the parent program: copy it character for
character, indentation included. Blocks apply in order. Keep the edit focused."""

REWRITE_FORMAT = """Reply with the complete new program in one fenced block:

```python
...the whole program, defining generate(space, n, rng, llm=None)...
```"""


@dataclass(frozen=True)
class Candidate:
    """A program the prompt can show: the parent or an inspiration."""

    key: str
    name: str
    source: str
    evaluation: Evaluation | None = None


@dataclass(frozen=True)
class PromptContext:
    """What every prompt of a run shares."""

    space: TraitSpace | None
    reference: ReferencePopulation | None
    objectives: Sequence[str]
    front_best: dict[str, float]
    """Best value on the Pareto front of each metric (``ScoreReport.flat`` names)."""


def contract_text() -> str:
    """The generator contract from :mod:`personaevo.programs`, with the allowed modules."""
    doc = programs.__doc__ or ""
    body = doc.split("A program's identity")[0].strip()
    allowed = ", ".join(sorted(programs.ALLOWED_MODULES - {"__future__"}))
    return (
        f"{body}\n\nAllowed modules: {allowed} (each by its full name).\n"
        "personaevo.generator_kit gives value_at(axis, u), traits_at(space, point), "
        "persona(id, traits, description=None, profile=None) and "
        "feasible_personas(space, points, n, prefix).\n"
        "The space object: space.context (text), space.axes (each with .name, .kind in "
        "{continuous, ordinal, categorical}, .low/.high for continuous axes, .values for "
        "the others, .low_anchor/.high_anchor), space.is_feasible(traits) -> bool, "
        "space.constraints, space.reference_sample (None, or .unit: respondents in the unit "
        "cube [0, 1]^d in axis order, and .bandwidth)."
    )


def describe_space(space: TraitSpace) -> str:
    lines = [f"Space {space.name!r}: {space.context.strip()}", "Axes (in order):"]
    for axis in space.axes:
        if isinstance(axis, ContinuousAxis):
            what = f"continuous {axis.low:g}..{axis.high:g} ({axis.bins} bins)"
        else:
            what = f"{axis.kind} {list(axis.values)}"
        anchors = ""
        if axis.low_anchor or axis.high_anchor:
            anchors = f"; low: {axis.low_anchor!r}, high: {axis.high_anchor!r}"
        lines.append(f"- {axis.name}: {what}{anchors}")
    if space.constraints:
        lines.append("Constraints (infeasible personas are invalid):")
        for c in space.constraints:
            parts = [f"{role} {_conditions(conds)}" for role, conds in c.clauses()]
            lines.append(f"- {c.name or 'constraint'}: {'; '.join(parts)}")
    return "\n".join(lines)


def _conditions(conds: dict) -> str:
    return " and ".join(
        f"{axis} {op} {operand}"
        for axis, cond in conds.items()
        for op, operand in cond.operators().items()
    )


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def compact_report(report: ScoreReport, objectives: Sequence[str]) -> str:
    """One line per metric, objectives first; invalid reasons when there are any."""
    flat = report.flat()
    names = [m for m in objectives if m in flat] + [m for m in flat if m not in objectives]
    lines = [
        f"- {m}: {_fmt(flat[m])}"
        + (" (objective" if m in objectives else "")
        + (f", {ScoreReport.direction(m)} is better)" if m in objectives else "")
        for m in names
    ]
    lines.insert(0, f"- personas: {report.n_personas} written, {report.n_valid} valid")
    if report.invalid_reasons:
        top = sorted(report.invalid_reasons.items(), key=lambda kv: -kv[1])[:3]
        lines.append("- invalid because: " + "; ".join(f"{r} ({c})" for r, c in top))
    return "\n".join(lines)


def shortfall(name: str, value: float | None, best: float | None) -> float:
    """How far ``value`` is behind ``best`` (0 = level or ahead, 1 = nothing), see the
    module docstring."""
    if value is None or best is None or not (math.isfinite(value) and math.isfinite(best)):
        return 0.0
    if ScoreReport.direction(name) == "higher":
        return 0.0 if best <= 0 else min(1.0, max(0.0, 1.0 - max(value, 0.0) / best))
    return 0.0 if value <= 0 else min(1.0, max(0.0, 1.0 - max(best, 0.0) / value))


def weakest_metrics(
    report: ScoreReport, objectives: Sequence[str], front_best: dict[str, float], k: int = 3
) -> list[str]:
    """The ``k`` metrics (objectives and headline ones) furthest behind the front."""
    flat = report.flat()
    names = list(dict.fromkeys([*objectives, *HEADLINE_METRICS]))
    gaps = [(shortfall(m, flat.get(m), front_best.get(m)), m) for m in names if m in flat]
    gaps = sorted((g for g in gaps if g[0] > 0.01), key=lambda g: (-g[0], g[1]))[:k]
    return [
        f"{m}: {_fmt(flat[m])} against {_fmt(front_best[m])} on the front ({gap:.0%} behind)"
        for gap, m in gaps
    ]


def best_on_front(evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """Best value of every metric over the front's evaluated reports."""
    best: dict[str, float] = {}
    for evaluation in evaluations:
        if evaluation.report is None:
            continue
        for name, value in evaluation.report.flat().items():
            if value is None or not math.isfinite(value):
                continue
            better = max if ScoreReport.direction(name) == "higher" else min
            best[name] = better(best.get(name, value), value)
    return best


def _bin_label(axis, b: int) -> str:
    if isinstance(axis, ContinuousAxis):
        width = (axis.high - axis.low) / axis.bins
        return f"{axis.name} in [{axis.low + b * width:.4g}, {axis.low + (b + 1) * width:.4g}]"
    return f"{axis.name}={axis.values[b]}"


def rare_combinations(reference: ReferencePopulation, t: int) -> list[tuple[str, float]]:
    """Every rare ``t``-way bin combination of the reference as ``(label, mass)``, rarest
    first (mass = share of respondents)."""
    axes_of = reference.space.axes
    out = []
    for axes, mass, rare in reference.tway(t):
        sizes = [axes_of[a].n_bins for a in axes]
        for index in np.flatnonzero(rare):
            bins, rest = [], int(index)
            for size in sizes:  # mixed radix, first axis fastest
                bins.append(rest % size)
                rest //= size
            label = " & ".join(_bin_label(axes_of[a], b) for a, b in zip(axes, bins, strict=True))
            out.append((label, float(mass[index])))
    out.sort(key=lambda item: (item[1], item[0]))
    return out


def feedback(
    parent: Candidate,
    context: PromptContext,
    rare_examples: Sequence[tuple[str, float]],
) -> list[str]:
    """The feedback lines about a parent."""
    lines = []
    evaluation = parent.evaluation
    if evaluation is not None and not evaluation.ok:
        lines.append(f"The parent FAILED: {evaluation.failure}: {evaluation.message[:600]}")
        if evaluation.traceback:
            tail = "\n".join(evaluation.traceback.strip().splitlines()[-12:])[-1500:]
            lines.append(f"Traceback (last lines):\n{tail}")
    report = evaluation.report if evaluation is not None else None
    if report is not None:
        weak = weakest_metrics(report, context.objectives, context.front_best)
        if weak:
            lines.append("Weakest metrics relative to the Pareto front:")
            lines += [f"- {w}" for w in weak]
        if report.reference is not None:
            reached = ", ".join(
                f"{c.covered} of {c.total} rare {t}-way combinations"
                for t, c in sorted(report.reference.rare_hits_tway.items())
            )
            if reached:
                lines.append(f"The parent reached {reached}.")
        missed = [c.name for c in report.consequential if not c.hit]
        if missed and context.space is not None:
            where = {c.name: c.where for c in context.space.consequential}
            lines.append("Consequential configurations it missed (no persona inside):")
            lines += [f"- {name}: {_conditions(where[name])}" for name in missed if name in where]
    if rare_examples:
        lines.append(
            "Rare combinations of real respondents (their share of the reference population); "
            "reach as many such combinations as you can:"
        )
        lines += [f"- {label} ({mass:.3%})" for label, mass in rare_examples]
    return lines


def build_messages(
    parent: Candidate,
    inspirations: Sequence[Candidate],
    directive: str,
    rewrite: bool,
    context: PromptContext,
    rare_examples: Sequence[tuple[str, float]] = (),
) -> list[Message]:
    """The conversation (system and user message) asking for one mutation of ``parent``."""
    sections = []
    if context.space is not None:
        sections.append("## The trait space\n" + describe_space(context.space))
    sections.append("## The generator contract\n" + contract_text())
    if context.objectives:
        sections.append(
            "## Objectives (the run maximises or minimises these together)\n"
            + "\n".join(f"- {m} ({ScoreReport.direction(m)} is better)" for m in context.objectives)
        )
    sections.append(f"## Parent program ({parent.name})\n```python\n{parent.source.rstrip()}\n```")
    evaluation = parent.evaluation
    if evaluation is not None and evaluation.report is not None:
        sections.append(
            "## Parent's metrics\n" + compact_report(evaluation.report, context.objectives)
        )
    notes = feedback(parent, context, rare_examples)
    if notes:
        sections.append("## Feedback\n" + "\n".join(notes))
    for i, other in enumerate(inspirations, start=1):
        scores = ""
        if other.evaluation is not None and other.evaluation.report is not None:
            flat = other.evaluation.report.flat()
            scores = "; " + ", ".join(f"{m}={_fmt(flat.get(m))}" for m in context.objectives)
        sections.append(
            f"## Inspiration {i} from the Pareto front ({other.name}{scores})"
            f"\n```python\n{other.source.rstrip()}\n```"
        )
    sections.append(f"## Directive\n{directive}")
    what = "a complete rewrite of the parent program" if rewrite else "an edit of the parent"
    sections.append(
        f"## Reply format\nWrite {what} that follows the directive and the contract.\n"
        + (REWRITE_FORMAT if rewrite else DIFF_FORMAT)
    )
    return [
        Message(role="system", content=SYSTEM_PROMPT),
        Message(role="user", content="\n\n".join(sections)),
    ]


def retry_message(kind: str, error: str, rewrite: bool, truncated: bool) -> Message:
    """The follow-up turn after a reply that could not be used."""
    cut = " Your reply was cut off at the token limit: keep it shorter." if truncated else ""
    again = (
        "Reply again with the complete corrected program in one ```python fenced block."
        if rewrite
        else "Reply again with corrected SEARCH/REPLACE blocks against the ORIGINAL parent "
        "program (the failed edit was not applied)."
    )
    return Message(
        role="user",
        content=f"Your reply could not be used. Error ({kind}): {error}.{cut}\n{again}",
    )
