"""The variation-operator interface: results, context, protocols, and the child check
every operator's output goes through."""

from __future__ import annotations

import ast
import functools
from abc import ABC, abstractmethod
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from personaevo.operators.analysis import Parsed, check_child
from personaevo.programs import ast_hash

FailureKind = Literal["syntax", "contract", "no-op", "no-site", "invalid-parent", "error"]
"""Why an operator produced no usable child:

* ``syntax`` -- the child does not parse or compile;
* ``contract`` -- it parses but breaks the generator contract;
* ``no-op`` -- its AST hash equals a parent's (nothing to re-evaluate);
* ``no-site`` -- the parent offers nothing this operator can change;
* ``invalid-parent`` -- a parent does not parse;
* ``error`` -- the operator itself raised (a bug; reported rather than raised).
"""


class VariationResult(BaseModel):
    """One child of a variation operator, or the reason there is none.

    ``ok`` is true exactly when ``source`` is set: a failed child never carries a source
    the loop could evaluate by mistake (the rejected text, when there is one, is kept in
    ``rejected_source`` for inspection).
    """

    model_config = ConfigDict(frozen=True)

    source: str | None = None
    operator: str
    parents: list[str]
    """AST hashes of the parents (the recipient first for crossover)."""
    ok: bool
    failure: FailureKind | None = None
    detail: str = ""
    """What was changed (for ok children) or what went wrong."""
    child_hash: str | None = None
    """The child's AST hash, when it parses."""
    rejected_source: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> VariationResult:
        if self.ok != (self.source is not None) or self.ok != (self.failure is None):
            raise ValueError("ok children have a source and no failure; failures the reverse")
        return self


class MutationContext(BaseModel):
    """Optional feedback about the parent, for operators that use it (the AST operators
    ignore it; a language-model operator can put it in its prompt)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    report: dict[str, Any] | None = None
    """The parent's metrics report (e.g. ``ScoreReport.model_dump()``)."""
    failure: str | None = None
    """How the parent failed when evaluated (e.g. ``"timeout"``), if it did."""
    message: str = ""
    """Free-form notes, e.g. the sandbox's error text."""
    extra: dict[str, Any] = {}


@runtime_checkable
class Mutation(Protocol):
    """A one-parent operator. It never raises on a bad child: it reports a failure."""

    name: str

    def __call__(
        self, source: str, rng: np.random.Generator, context: MutationContext | None = None
    ) -> VariationResult: ...


@runtime_checkable
class Crossover(Protocol):
    """A two-parent operator giving two children: ``a`` with material from ``b``, and
    ``b`` with material from ``a``."""

    name: str

    def __call__(
        self, a: str, b: str, rng: np.random.Generator
    ) -> tuple[VariationResult, VariationResult]: ...


@functools.lru_cache(maxsize=4096)
def _cached_hash(source: str) -> str:
    return ast_hash(source)


def parent_hashes(*sources: str) -> list[str] | None:
    """AST hashes of the parents (cached: a parent is usually varied many times), or
    None when one does not parse."""
    try:
        return [_cached_hash(s) for s in sources]
    except (SyntaxError, ValueError, RecursionError):
        return None


def failed(
    operator: str, parents: list[str], failure: FailureKind, detail: str = "", **kw: Any
) -> VariationResult:
    """A failure result."""
    return VariationResult(
        operator=operator, parents=parents, ok=False, failure=failure, detail=detail, **kw
    )


def make_child(source: str, operator: str, parents: list[str], detail: str = "") -> VariationResult:
    """Check a candidate child and wrap it: parse, contract-check, and compare its AST
    hash with the parents'. Any operator (an LLM-driven one included) can return this."""
    verdict = check_child(source)
    if isinstance(verdict, tuple):
        kind, why = verdict
        return failed(
            operator, parents, kind, f"{detail}: {why}" if detail else why, rejected_source=source
        )
    digest = verdict
    if digest in parents:
        return failed(
            operator,
            parents,
            "no-op",
            detail or "child equals a parent",
            child_hash=digest,
            rejected_source=source,
        )
    return VariationResult(
        source=source,
        operator=operator,
        parents=parents,
        ok=True,
        detail=detail,
        child_hash=digest,
    )


def unparse(tree: ast.Module) -> str:
    """Source text of an edited tree (comments are lost; identity is the AST hash)."""
    return ast.unparse(tree) + "\n"


class NoSiteError(Exception):
    """Raised inside an operator when the parent offers nothing to change."""


class AstMutation(ABC):
    """Base for mutations that edit a parsed copy of the parent in place.

    Subclasses implement :meth:`edit`, which changes ``tree`` and returns a short
    description of the change, or raises :class:`NoSiteError`.
    """

    name: str = "ast"

    def __call__(
        self, source: str, rng: np.random.Generator, context: MutationContext | None = None
    ) -> VariationResult:
        parents = parent_hashes(source)
        if parents is None:
            return failed(self.name, [], "invalid-parent", "parent does not parse")
        parsed = Parsed(source)
        tree = parsed.tree
        try:
            detail = self.edit_parsed(parsed, rng, context)
        except NoSiteError as exc:
            return failed(self.name, parents, "no-site", str(exc))
        except Exception as exc:  # an operator bug must not stop the evolution loop
            return failed(self.name, parents, "error", f"{type(exc).__name__}: {exc}")
        try:
            child = unparse(tree)
        except (RecursionError, ValueError, TypeError, AttributeError) as exc:
            return failed(self.name, parents, "syntax", f"unparse failed: {exc}")
        return make_child(child, self.name, parents, detail)

    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        """:meth:`edit` on ``parsed.tree``; operators that use the per-source analysis
        cache (:class:`.analysis.Parsed`) override this and call it from :meth:`edit`."""
        return self.edit(parsed.tree, rng, context)

    @abstractmethod
    def edit(
        self, tree: ast.Module, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        """Change ``tree`` in place; return what was done, or raise :class:`NoSiteError`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class CachedAstMutation(AstMutation):
    """An :class:`AstMutation` written against the per-source analysis cache: subclasses
    implement :meth:`edit_parsed`; :meth:`edit` runs it on a plain tree with no cache."""

    @abstractmethod
    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str: ...

    def edit(
        self, tree: ast.Module, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        return self.edit_parsed(Parsed(None, tree), rng, context)


def pick(rng: np.random.Generator, items: list[Any], weights: list[float] | None = None) -> Any:
    """One item, uniformly or by (unnormalised) weights, drawn from ``rng``."""
    if not items:
        raise NoSiteError("nothing to choose from")
    if weights is None:
        return items[int(rng.integers(0, len(items)))]
    w = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]
