"""LLM-driven mutation: a language model edits a parent program, batched per generation.

:meth:`LLMMutation.mutate_batch` takes every parent the loop wants mutated by the model
in one generation and sends all the prompts as **one** batched ``llm.chat`` call (a batched
generate in transformers, concurrent requests over HTTP, vLLM's batching); the replies that
cannot be used are re-asked once, with the error, in a second batched call. Each prompt
(:mod:`personaevo.operators.llm_prompt`) shows the parent, its metrics and failure
feedback, one or two inspiration programs from the Pareto front and one directive drawn
from the list; the reply is SEARCH/REPLACE blocks, or a full rewrite for a share
``full_rewrite_rate`` of the prompts (:mod:`personaevo.operators.llm_patch`).

Every request ends with one outcome (:data:`OUTCOMES`), counted by the loop:

* ``applied`` / ``applied_after_retry`` -- a new, contract-valid child (first or second try);
* ``no_match`` / ``ambiguous`` -- a SEARCH text occurs zero / several times in the parent;
* ``bad_format`` -- no block or fenced program could be read from the reply;
* ``syntax`` / ``contract`` -- the child does not parse / breaks the generator contract;
* ``identical`` -- the child's AST hash equals the parent's;
* ``llm_error`` -- the model call itself failed (unreachable endpoint, ...).

All choices (directive, inspirations, rewrite or diff, rare examples, the sampling seed)
come from the generator passed in, in request order: the same seed and the same replies
give the same children.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from personaevo.llm.base import LLM, Completion, Message, SamplingParams, Usage
from personaevo.operators.base import (
    FailureKind,
    MutationContext,
    VariationResult,
    failed,
    make_child,
    parent_hashes,
)
from personaevo.operators.llm_patch import PatchError, apply_reply
from personaevo.operators.llm_prompt import (
    DEFAULT_DIRECTIVES,
    Candidate,
    PromptContext,
    best_on_front,
    build_messages,
    rare_combinations,
    retry_message,
)
from personaevo.reference import ReferencePopulation
from personaevo.spaces import TraitSpace

OUTCOMES: tuple[str, ...] = (
    "applied",
    "applied_after_retry",
    "no_match",
    "ambiguous",
    "bad_format",
    "syntax",
    "contract",
    "identical",
    "llm_error",
)
"""Every outcome a request can end with (see the module docstring)."""

REPLY_TOKENS = 2048
"""New tokens per reply by default: a rewrite must hold a whole program."""

RARE_EXAMPLES = 6  # rare combinations shown per prompt (a seeded draw)

_CHECK_OUTCOME: dict[str, str] = {"syntax": "syntax", "contract": "contract", "no-op": "identical"}
_IDENTICAL = (
    "the edited program is identical to the parent (same AST hash): change what it does, "
    "not only comments or formatting"
)


@dataclass
class LLMChild:
    """The fate of one request: the child (when applied) and how it went."""

    parent: Candidate
    outcome: str
    result: VariationResult | None = None
    error: str = ""
    directive: str = ""
    rewrite: bool = False
    attempts: int = 0


@dataclass
class LLMBatch:
    """What one :meth:`LLMMutation.mutate_batch` produced and cost."""

    children: list[LLMChild]
    usage: Usage = field(default_factory=Usage)

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(child.outcome for child in self.children)


@dataclass
class _Pending:
    child: LLMChild
    messages: list[Message]
    reply: Completion | None = None


class LLMMutation:
    """A language model as a mutation operator (see the module docstring).

    ``directives`` defaults to :data:`~personaevo.operators.llm_prompt.DEFAULT_DIRECTIVES`;
    ``params`` are the sampling defaults (default: the model's), with ``max_tokens`` new
    tokens per reply (default :data:`REPLY_TOKENS`); each batch gets a seed drawn from the
    run's generator.
    ``space``, ``reference`` and ``objectives`` make the prompts specific to the run.
    """

    name = "llm"

    def __init__(
        self,
        llm: LLM,
        space: TraitSpace | None = None,
        reference: ReferencePopulation | None = None,
        objectives: Sequence[str] = (),
        directives: Sequence[str] | None = None,
        full_rewrite_rate: float = 0.25,
        inspirations: int = 2,
        params: SamplingParams | None = None,
        max_tokens: int = REPLY_TOKENS,
    ) -> None:
        if not 0 <= full_rewrite_rate <= 1:
            raise ValueError(f"full_rewrite_rate must be in [0, 1], got {full_rewrite_rate}")
        self.llm = llm
        self.space = space
        self.reference = reference
        self.objectives = list(objectives)
        self.directives = list(directives) if directives else list(DEFAULT_DIRECTIVES)
        self.full_rewrite_rate = full_rewrite_rate
        self.inspirations = inspirations
        base = params or llm.default_params
        self.params = base.model_copy(update={"max_tokens": max_tokens})
        self._rare: dict[int, list[tuple[str, float]]] = {}

    # ------------------------------------------------------------------ prompts

    def rare(self, t: int) -> list[tuple[str, float]]:
        """The reference's rare ``t``-way combinations, rarest first (computed once)."""
        if t not in self._rare:
            found = rare_combinations(self.reference, t) if self.reference is not None else []
            self._rare[t] = found
        return self._rare[t]

    def _rare_examples(
        self, parent: Candidate, rng: np.random.Generator
    ) -> list[tuple[str, float]]:
        """A seeded draw of rare combinations, of the order ``t`` (2 or 3) the parent
        covers the smallest share of (2 when it has no report)."""
        if self.reference is None:
            return []
        t = 2
        report = parent.evaluation.report if parent.evaluation is not None else None
        if report is not None and report.reference is not None:
            shares = {
                int(k): c.fraction
                for k, c in report.reference.rare_hits_tway.items()
                if c.total and int(k) in (2, 3)
            }
            t = min(shares, key=lambda k: (shares[k], k)) if shares else 2
        rare = self.rare(t)
        m = min(RARE_EXAMPLES, len(rare))
        return [rare[i] for i in sorted(rng.choice(len(rare), size=m, replace=False))] if m else []

    def _request(
        self,
        parent: Candidate,
        front: Sequence[Candidate],
        context: PromptContext,
        rng: np.random.Generator,
    ) -> _Pending:
        directive = self.directives[int(rng.integers(len(self.directives)))]
        rewrite = bool(rng.random() < self.full_rewrite_rate)
        others = [c for c in front if c.key != parent.key]
        k = min(self.inspirations, len(others))
        picks = sorted(rng.choice(len(others), size=k, replace=False).tolist()) if k else []
        shown = self._rare_examples(parent, rng)
        messages = build_messages(
            parent, [others[i] for i in picks], directive, rewrite, context, shown
        )
        child = LLMChild(parent=parent, outcome="", directive=directive, rewrite=rewrite)
        return _Pending(child, messages)

    # ----------------------------------------------------------------- batches

    def mutate_batch(
        self,
        parents: Sequence[Candidate],
        front: Sequence[Candidate],
        rng: np.random.Generator,
    ) -> LLMBatch:
        """One child (or failure) per parent, in order: one batched call for all of them,
        then one more for the replies that could not be used."""
        batch = LLMBatch(children=[])
        if not parents:
            return batch
        context = PromptContext(
            space=self.space,
            reference=self.reference,
            objectives=self.objectives,
            front_best=best_on_front([c.evaluation for c in front if c.evaluation is not None]),
        )
        pending = [self._request(parent, front, context, rng) for parent in parents]
        params = self.params.model_copy(update={"seed": int(rng.integers(2**31 - 1))})
        retry = self._round(pending, params, batch.usage, first=True)
        if retry:
            self._round(retry, params, batch.usage, first=False)
        batch.children = [p.child for p in pending]
        return batch

    def _round(
        self, pending: list[_Pending], params: SamplingParams, usage: Usage, first: bool
    ) -> list[_Pending]:
        """Ask for every pending request at once; settle each; return those to re-ask."""
        start = time.perf_counter()
        try:
            replies = self.llm.chat([p.messages for p in pending], params)
        except Exception as exc:  # unreachable endpoint, engine error: the loop goes on
            usage.failed_calls += 1  # as LLM.usage counts it; the time spent still counts
            usage.seconds += time.perf_counter() - start
            for p in pending:
                p.child.outcome, p.child.error = "llm_error", f"{type(exc).__name__}: {exc}"
                p.child.attempts += 1
            return []
        usage.add(replies, time.perf_counter() - start)
        again = []
        for p, reply in zip(pending, replies, strict=True):
            p.child.attempts += 1
            outcome, result, error = self._settle(p.child, reply.text)
            p.child.result, p.child.error = result, error
            if outcome == "applied":
                p.child.outcome = "applied" if first else "applied_after_retry"
                continue
            p.child.outcome = outcome
            if first:
                truncated = reply.finish_reason == "length"
                p.messages = [
                    *p.messages,
                    Message(role="assistant", content=reply.text),
                    retry_message(outcome, error, p.child.rewrite, truncated),
                ]
                again.append(p)
        return again

    def _settle(self, child: LLMChild, reply: str) -> tuple[str, VariationResult | None, str]:
        parent = child.parent
        try:
            source = apply_reply(parent.source, reply, child.rewrite)
        except PatchError as err:
            return err.kind, None, str(err)
        kind = "rewrite" if child.rewrite else "diff"
        result = make_child(source, self.name, [parent.key], f"llm {kind}: {child.directive}")
        if result.ok:
            return "applied", result, ""
        outcome = _CHECK_OUTCOME.get(result.failure or "", "contract")
        return outcome, None, _IDENTICAL if outcome == "identical" else result.detail

    # ------------------------------------------------- the one-parent interface

    def __call__(
        self, source: str, rng: np.random.Generator, context: MutationContext | None = None
    ) -> VariationResult:
        """One child from one parent (one model call, plus a retry): the
        :class:`~personaevo.operators.Mutation` signature, for use with
        :func:`~personaevo.operators.mutate`. The evolution loop uses
        :meth:`mutate_batch` instead, to batch a generation's requests."""
        parents = parent_hashes(source)
        if parents is None:
            return failed(self.name, [], "invalid-parent", "parent does not parse")
        parent = Candidate(key=parents[0], name="parent", source=source)
        (child,) = self.mutate_batch([parent], [], rng).children
        if child.result is not None and child.result.ok:
            return child.result
        kind: FailureKind = {"syntax": "syntax", "contract": "contract", "identical": "no-op"}.get(
            child.outcome, "error"
        )
        return failed(self.name, parents, kind, f"{child.outcome}: {child.error}")
