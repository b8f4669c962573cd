"""Persona writing and measuring with a real language model (issue 13, item 6).

Three measurements, each through the project's own API, with one model (``--model``, a
spec as ``--llm`` takes it: ``smollm2`` by default, ``tiny`` for a quick check):

1. **Questionnaire assessor on phrase-bank personas.** The ``phrase_bank`` seed generator
   runs in the sandbox; its personas' text says where each sits on each axis. The
   :class:`~personaevo.assess.QuestionnaireAssessor` asks the model every Likert item in
   persona. Per ordered axis with items: the Spearman correlation ``rho`` between the
   declared unit position ``u_decl`` and the measured one ``u_meas`` over the personas
   measured (target of the issue: mean over axes above 0.3), and the parse rate
   (replies that are a single digit 1-5, over all replies).

   A diagnostic beside it, on the same replies: ``lenient rho`` scores each reply by its
   *first* digit 1-5 anywhere in the text (``"4."``, ``"I'd say 4"``), averages the
   reverse-keyed scores per axis like the assessor, and correlates that with ``u_decl``.
   It tells whether the model's answers carry the persona when the strict parser rejects
   their form. It is not what the assessor measures.
2. **Two-stage writer.** ``generators/llm_two_stage.py`` runs in the sandbox with the
   model behind the sandbox's model bridge (a :class:`~personaevo.llm.base.ProgramLLM`,
   as ``personaevo score --llm`` passes it). Per axis: Spearman ``rho`` and the mean
   absolute error ``|u_meas - u_decl|`` (unit interval) of the embedding assessor and the
   questionnaire assessor against the intended (placed) positions; plus how many
   descriptions came back from the model (the writer keeps an anchor-template text for a
   reply it cannot read).
3. **LLM mutation.** :class:`~personaevo.operators.llm.LLMMutation` with the model, on the
   seed generators as parents (cycled; each with its evaluation, so prompts carry metrics
   and feedback) and the seeds as the front the inspirations come from. Outcome counts per
   kind (the operator's :data:`~personaevo.operators.llm.OUTCOMES`) over ``--requests``
   requests, and for every applied child whether it runs in the sandbox and returns valid
   personas (``check_personas``).

Positions: continuous ``u = (v - low) / (high - low)``, ordinal ``u = index / (k - 1)``;
Spearman's rho is undefined (``n/a``) when either side is constant or fewer than 3
personas were measured. Every random choice takes ``--seed``.

Run: ``python experiments/language_parts.py`` (``--model tiny`` for a quick check);
the results go to ``experiments/results/language_parts_<model>.txt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy.stats import spearmanr

from personaevo import check_personas, load_space
from personaevo.assess import EmbeddingAssessor, MeasuredPositions, QuestionnaireAssessor
from personaevo.assess.questionnaire import questionnaire_axes
from personaevo.evaluate import evaluate_programs, generator_space
from personaevo.evolution.config import (
    DEFAULT_OBJECTIVES_WITH_REFERENCE,
    DEFAULT_OBJECTIVES_WITHOUT_REFERENCE,
)
from personaevo.llm import build_llm
from personaevo.llm.base import LLM, Completion, Message, ProgramLLM, SamplingParams
from personaevo.operators.llm import OUTCOMES, LLMMutation
from personaevo.operators.llm_prompt import Candidate
from personaevo.programs import load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Job, Sandbox, SandboxLimits
from personaevo.spaces import ContinuousAxis, TraitSpace

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = ROOT / "generators"
_FIRST_DIGIT = re.compile(r"[1-5]")


# ----------------------------------------------------------------------------- helpers


class RecordingLLM(LLM):
    """Forwards to ``inner`` and keeps every (conversation, reply) pair, in order."""

    def __init__(self, inner: LLM) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.default_params = inner.default_params
        self.log: list[tuple[list[Message], Completion]] = []

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        replies = self.inner.chat(conversations, params)
        self.log += list(zip(conversations, replies, strict=True))
        return replies

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self.inner.complete(prompts, params)


def unit_position(axis: Any, value: Any) -> float:
    """Declared position on the unit interval (module docstring)."""
    if isinstance(axis, ContinuousAxis):
        return (float(value) - axis.low) / (axis.high - axis.low)
    return axis.levels.index(value) / (len(axis.levels) - 1)


def rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho, NaN when undefined (fewer than 3 pairs, or a constant side)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def run_program(
    path: Path, space: TraitSpace, n: int, seed: int, llm: LLM | None, wall: float
) -> list[dict]:
    """The valid personas of one sandboxed run of the generator at ``path``."""
    limits = SandboxLimits.for_personas(n, wall)
    program_llm = ProgramLLM(llm, llm.default_params) if llm is not None else None
    view = generator_space(space)
    job = Job(program=load_program(path), space=view, n=n, seed=seed, llm=program_llm)
    with Sandbox(workers=1, limits=limits) as sandbox:
        (result,) = sandbox.map([job])
    if not result.ok:
        raise RuntimeError(f"{path.name}: {result.failure}: {result.message}")
    return result.personas


def load_generator(name: str) -> ModuleType:
    """A seed generator's module, for its helper functions (not for running it)."""
    spec = importlib.util.spec_from_file_location(f"_gen_{name}", GENERATORS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AxisAgreement(BaseModel):
    """How measured positions on one axis follow the declared ones."""

    axis: str
    n: int  # personas measured on this axis
    rho: float
    mae: float  # mean |u_meas - u_decl|


def agreement(
    personas: list[dict], measured: MeasuredPositions, space: TraitSpace, axes: Sequence[str]
) -> list[AxisAgreement]:
    """Per axis: Spearman rho and mean absolute error of measured against declared."""
    by_name = {a.name: a for a in space.axes}
    declared = {p["id"]: p["traits"] for p in personas}
    rows = []
    for name in axes:
        pairs = [
            (unit_position(by_name[name], declared[m.id][name]), m.positions[name])
            for m in measured.measurements
            if m.reason is None and name in m.positions and m.id in declared
        ]
        x, y = [p[0] for p in pairs], [p[1] for p in pairs]
        mae = float(np.mean(np.abs(np.subtract(x, y)))) if pairs else math.nan
        rows.append(AxisAgreement(axis=name, n=len(pairs), rho=rho(x, y), mae=mae))
    return rows


def lenient_rho(
    personas: list[dict], log: list[tuple[list[Message], Completion]], space: TraitSpace
) -> dict[str, float]:
    """Per axis: rho of the first-digit item scores (module docstring) with u_decl.

    ``log`` holds the questionnaire's conversations in its order: persona by persona,
    each persona's items axis by axis."""
    items = [(axis, item) for axis in questionnaire_axes(space) for item in axis.items]
    scores: dict[str, list[tuple[float, float]]] = {}
    for k, persona in enumerate(personas):
        replies = log[k * len(items) : (k + 1) * len(items)]
        per_axis: dict[str, list[int]] = {}
        for (axis, item), (_, reply) in zip(items, replies, strict=True):
            found = _FIRST_DIGIT.search(reply.text)
            if found:
                x = int(found.group())
                per_axis.setdefault(axis.name, []).append(6 - x if item.reverse else x)
        for axis in questionnaire_axes(space):
            if per_axis.get(axis.name):
                u = (float(np.mean(per_axis[axis.name])) - 1) / 4
                scores.setdefault(axis.name, []).append(
                    (unit_position(axis, persona["traits"][axis.name]), u)
                )
    return {
        a.name: rho([p[0] for p in scores.get(a.name, [])], [p[1] for p in scores.get(a.name, [])])
        for a in questionnaire_axes(space)
    }


def measure_questionnaire(
    personas: list[dict], space: TraitSpace, llm: LLM, seed: int, chunk: int
) -> tuple[MeasuredPositions, list[tuple[list[Message], Completion]], dict[str, Any]]:
    """The questionnaire assessor's measurement of ``personas``, ``chunk`` personas per
    model call (bounding the batch's memory); the logged replies; the pooled detail."""
    recorder = RecordingLLM(llm)
    assessor = QuestionnaireAssessor(recorder)
    parts = [
        assessor.measure(personas[i : i + chunk], space, seed=seed)
        for i in range(0, len(personas), chunk)
    ]
    details = [p.summary.detail for p in parts]
    answers = sum(d.get("answers", 0) for d in details)
    parsed = sum(d.get("parsed", 0) for d in details)
    examples = Counter(e for d in details for e in d.get("unparsed_examples", []))
    measured = MeasuredPositions(
        records=[r for p in parts for r in p.records],
        measurements=[m for p in parts for m in p.measurements],
        summary=parts[0].summary,
    )
    detail = {
        "answers": answers,
        "parsed": parsed,
        "parse_rate": parsed / answers if answers else math.nan,
        "measured": sum(m.reason is None for m in measured.measurements),
        "unparsed_examples": [e for e, _ in examples.most_common(6)],
        "errors": [d["error"] for d in details if "error" in d],
    }
    return measured, recorder.log, detail


_SEEDS: dict[tuple[str, int], tuple[ReferencePopulation | None, list[Candidate]]] = {}


def seed_candidates(
    space: TraitSpace, seed: int
) -> tuple[ReferencePopulation | None, list[Candidate]]:
    """The space's built-in reference and the seed generators as candidates, each with its
    evaluation (n = 50, scored against that reference), as the evolution loop shows them;
    computed once per space and seed."""
    key = (space.model_dump_json(), seed)
    if key in _SEEDS:
        return _SEEDS[key]
    reference = ReferencePopulation.default_for(space, seed=seed)
    paths = sorted(p for p in GENERATORS.glob("*.py") if not p.name.startswith("_"))
    evaluations = evaluate_programs(paths, space, n=50, seed=seed, reference=reference)
    seeds = [
        Candidate(
            key=e.program_hash, name=p.stem, source=p.read_text(encoding="utf-8"), evaluation=e
        )
        for p, e in zip(paths, evaluations, strict=True)
    ]
    _SEEDS[key] = reference, seeds
    return _SEEDS[key]


# ------------------------------------------------------------------------ the three parts


def part_questionnaire(
    space: TraitSpace, llm: LLM, n: int, seed: int, chunk: int, out: Callable[[str], None]
) -> dict[str, Any]:
    """Part 1 (module docstring)."""
    personas = run_program(GENERATORS / "phrase_bank.py", space, n, seed, None, 60.0)
    measured, log, detail = measure_questionnaire(personas, space, llm, seed, chunk)
    axes = [a.name for a in questionnaire_axes(space)]
    rows = agreement(personas, measured, space, axes)
    lenient = lenient_rho(personas, log, space)
    out(f"\n## 1. Questionnaire assessor on {len(personas)} phrase-bank personas ({space.name})")
    out(
        f"answers {detail['answers']}, parsed {detail['parsed']} "
        f"(parse rate {fmt(detail['parse_rate'], 3)}); personas measured "
        f"{detail['measured']} of {len(personas)}"
    )
    out(f"{'axis':22s} {'n':>3s} {'rho':>6s} {'mae':>6s} {'lenient rho':>12s}")
    for r in rows:
        out(f"{r.axis:22s} {r.n:3d} {fmt(r.rho):>6s} {fmt(r.mae):>6s} {fmt(lenient[r.axis]):>12s}")
    mean = nanmean([r.rho for r in rows])
    mean_lenient = nanmean(list(lenient.values()))
    out(f"{'mean over axes':22s} {'':3s} {fmt(mean):>6s} {'':6s} {fmt(mean_lenient):>12s}")
    out(f"target: mean rho above 0.3 -> {'met' if mean > 0.3 else 'not met'}")
    out(f"most common unparsed replies: {detail['unparsed_examples']}")
    for error in detail["errors"]:
        out(f"model error: {error}")
    return {"mean_rho": mean, "parse_rate": detail["parse_rate"], "lenient": mean_lenient}


def part_writer(
    space: TraitSpace,
    llm: LLM,
    n: int,
    seed: int,
    chunk: int,
    wall: float,
    out: Callable[[str], None],
) -> dict[str, Any]:
    """Part 2 (module docstring)."""
    start = time.perf_counter()
    personas = run_program(GENERATORS / "llm_two_stage.py", space, n, seed, llm, wall)
    written = time.perf_counter() - start
    writer = load_generator("llm_two_stage")
    from_model = sum(
        p["description"] != writer.template_description(space, p["traits"]) for p in personas
    )
    with_profile = sum(bool(p.get("profile")) for p in personas)
    ordered = [a.name for a in space.axes if a.kind != "categorical"]
    embedded = EmbeddingAssessor().measure(personas, space, seed=seed)
    by_embedding = agreement(personas, embedded, space, ordered)
    asked, _, detail = measure_questionnaire(personas, space, llm, seed, chunk)
    by_questionnaire = {
        r.axis: r
        for r in agreement(personas, asked, space, [a.name for a in questionnaire_axes(space)])
    }
    out(f"\n## 2. Two-stage writer: {len(personas)} personas written in {written:.0f} s")
    out(
        f"descriptions from the model: {from_model} of {len(personas)} "
        f"(the rest: anchor template); with a profile: {with_profile}"
    )
    out(
        f"questionnaire parse rate {fmt(detail['parse_rate'], 3)}; personas measured "
        f"{detail['measured']} of {len(personas)}"
    )
    out(f"{'axis':22s} {'emb n':>5s} {'emb rho':>8s} {'emb mae':>8s} {'q n':>4s} {'q rho':>6s}")
    for r in by_embedding:
        q = by_questionnaire.get(r.axis)
        q_cells = f"{q.n:4d} {fmt(q.rho):>6s}" if q else f"{'-':>4s} {'-':>6s}"
        out(f"{r.axis:22s} {r.n:5d} {fmt(r.rho):>8s} {fmt(r.mae):>8s} {q_cells}")
    mean_e = nanmean([r.rho for r in by_embedding])
    mean_q = nanmean([r.rho for r in by_questionnaire.values()])
    out(f"{'mean over axes':22s} {'':5s} {fmt(mean_e):>8s} {'':8s} {'':4s} {fmt(mean_q):>6s}")
    if personas:
        out(f"first description: {personas[0]['description'][:300]!r}")
    return {"from_model": from_model, "embedding_rho": mean_e, "questionnaire_rho": mean_q}


def part_mutation(
    space: TraitSpace,
    llm: LLM,
    requests: int,
    seed: int,
    batch: int,
    max_tokens: int,
    inspirations: int,
    personas: int,
    out: Callable[[str], None],
) -> dict[str, Any]:
    """Part 3 (module docstring)."""
    reference, seeds = seed_candidates(space, seed)
    objectives = (
        DEFAULT_OBJECTIVES_WITH_REFERENCE if reference else DEFAULT_OBJECTIVES_WITHOUT_REFERENCE
    )
    operator = LLMMutation(
        llm,
        space,
        reference,
        objectives,
        inspirations=inspirations,
        max_tokens=max_tokens,
    )
    rng = np.random.default_rng([seed, 0x6C6D])
    children = []
    start = time.perf_counter()
    for first in range(0, requests, batch):
        parents = [seeds[i % len(seeds)] for i in range(first, min(requests, first + batch))]
        children += operator.mutate_batch(parents, seeds, rng).children
    seconds = time.perf_counter() - start
    outcomes = Counter(c.outcome for c in children)
    applied = [c for c in children if c.result is not None and c.result.ok]
    valid_children = 0
    valid_shares = []
    if applied:
        limits = SandboxLimits.for_personas(personas, 30.0)
        jobs = [
            Job(program=c.result.source, space=generator_space(space), n=personas, seed=seed)
            for c in applied
        ]
        with Sandbox(workers=1, limits=limits) as sandbox:
            results = sandbox.map(jobs)
        for result in results:
            good = len(check_personas(result.personas, space).valid) if result.ok else 0
            valid_shares.append(good / personas)
            valid_children += good > 0
    out(
        f"\n## 3. LLM mutation: {len(children)} requests, batches of {batch}, "
        f"{max_tokens} new tokens at most, {inspirations} inspiration(s), {seconds:.0f} s"
    )
    out(f"{'outcome':22s} {'count':>5s} {'rate':>6s}")
    for kind in OUTCOMES:
        out(f"{kind:22s} {outcomes[kind]:5d} {outcomes[kind] / max(len(children), 1):6.2f}")
    out(
        f"applied children: {len(applied)}; run in the sandbox and return valid personas: "
        f"{valid_children} (mean valid share {fmt(nanmean(valid_shares))})"
    )
    examples = [c.error[:160] for c in children if c.error][:3]
    out(f"example errors: {examples}")
    return {"outcomes": dict(outcomes), "applied": len(applied), "valid": valid_children}


# ------------------------------------------------------------------------------- main


def header(argv: Sequence[str], model: str) -> str:
    """Date, commit, command, model and machine load, on one line."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = "python experiments/language_parts.py " + shlex.join(argv)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {now}, commit {commit}; {command.strip()}; model {model}; "
        f"{os.cpu_count()} CPUs ({platform.machine()}), load average {load} at start"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="model spec (default smollm2)")
    parser.add_argument("--space", default="big_five")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questionnaire-personas", type=int, default=6)
    parser.add_argument("--writer-personas", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4, help="LLM mutation requests")
    parser.add_argument("--mutation-batch", type=int, default=4, help="requests per call")
    parser.add_argument("--mutation-tokens", type=int, default=384, help="new tokens per reply")
    parser.add_argument("--inspirations", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=4, help="personas per questionnaire call")
    parser.add_argument("--writer-wall", type=float, default=900.0, help="writer's wall limit, s")
    parser.add_argument("--only", nargs="*", choices=("questionnaire", "writer", "mutation"))
    parser.add_argument("--out", type=Path, help="results file (default experiments/results/)")
    args = parser.parse_args(argv)
    model_name = re.sub(r"[^\w.-]+", "_", args.model)
    path = args.out or ROOT / "experiments" / "results" / f"language_parts_{model_name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")

    def out(line: str) -> None:  # printed, and appended at once (a cut run keeps its parts)
        print(line, flush=True)
        with path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    out(header(argv, args.model))
    space = load_space(args.space)
    start = time.perf_counter()
    llm = build_llm(args.model)
    out(f"model {llm.name} loaded in {time.perf_counter() - start:.0f} s; space {space.name}")
    parts = args.only or ["questionnaire", "writer", "mutation"]
    timings = []
    for part in parts:
        t0 = time.perf_counter()
        before = llm.usage_snapshot()
        if part == "questionnaire":
            part_questionnaire(space, llm, args.questionnaire_personas, args.seed, args.chunk, out)
        elif part == "writer":
            part_writer(
                space, llm, args.writer_personas, args.seed, args.chunk, args.writer_wall, out
            )
        else:
            part_mutation(
                space,
                llm,
                args.requests,
                args.seed,
                args.mutation_batch,
                args.mutation_tokens,
                args.inspirations,
                20,
                out,
            )
        used = llm.usage_snapshot() - before
        seconds = time.perf_counter() - t0
        timings.append(
            f"{part}: {seconds:.0f} s, {used.requests} requests, {used.prompt_tokens} prompt "
            f"+ {used.completion_tokens} completion tokens "
            f"({used.prompt_tokens / max(used.seconds, 1e-9):.0f} prompt tokens/s of model time)"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out(f"\n## Time (load average {load} at the end)")
    for line in timings:
        out(line)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
