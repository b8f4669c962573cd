"""Statement-level mutations inside functions: insert, delete, duplicate.

Positions and donors are filtered with the name analysis of :mod:`.scope`, so an edit
usually leaves every name it reads bound (the child is still checked, and run, later).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np

from personaevo.operators.analysis import Parsed, fresh_copy
from personaevo.operators.base import CachedAstMutation, MutationContext, NoSiteError, pick
from personaevo.operators.scope import (
    Facts,
    Site,
    contains,
    escapes,
    expr_free,
    fits,
    iter_scope_stmts,
    stmt_binds,
    updates,
)


@dataclass(frozen=True)
class LibraryStatement:
    """A reusable statement: inserted where every name it reads is in scope.

    ``needs_param`` restricts it to functions with that parameter (e.g. ``axis`` for a
    value-returning helper); ``helpers_only`` keeps it out of ``generate``.
    """

    name: str
    code: str
    needs_param: str | None = None
    helpers_only: bool = False

    def statement(self) -> ast.stmt:
        body = ast.parse(self.code).body
        if len(body) != 1:
            raise ValueError(f"library statement {self.name!r} must be one statement")
        return body[0]


STATEMENT_LIBRARY: list[LibraryStatement] = [
    LibraryStatement(
        "push_axis_to_an_end",
        """
if rng.random() < 0.25:
    _axis = space.axes[int(rng.integers(0, len(space.axes)))]
    if _axis.kind == 'continuous':
        traits[_axis.name] = float(_axis.low if rng.random() < 0.5 else _axis.high)
    else:
        traits[_axis.name] = _axis.values[0 if rng.random() < 0.5 else -1]
""",
    ),
    LibraryStatement(
        "resample_one_axis",
        """
if rng.random() < 0.25:
    _axis = space.axes[int(rng.integers(0, len(space.axes)))]
    if _axis.kind == 'continuous':
        traits[_axis.name] = float(rng.uniform(_axis.low, _axis.high))
    else:
        traits[_axis.name] = _axis.values[int(rng.integers(0, len(_axis.values)))]
""",
    ),
    LibraryStatement(
        "mirror_one_axis",
        """
if rng.random() < 0.2:
    _axis = space.axes[int(rng.integers(0, len(space.axes)))]
    if _axis.name in traits:
        if _axis.kind == 'continuous':
            traits[_axis.name] = float(_axis.low + _axis.high - traits[_axis.name])
        elif traits[_axis.name] in _axis.values:
            _k = len(_axis.values) - 1 - _axis.values.index(traits[_axis.name])
            traits[_axis.name] = _axis.values[_k]
""",
    ),
    LibraryStatement(
        "copy_trait_from_earlier_persona",
        """
if personas and traits and rng.random() < 0.2:
    _other = personas[int(rng.integers(0, len(personas)))]['traits']
    _name = list(traits)[int(rng.integers(0, len(traits)))]
    traits[_name] = _other.get(_name, traits[_name])
""",
    ),
    LibraryStatement("shuffle_personas", "rng.shuffle(personas)"),
    LibraryStatement(
        "axis_extreme_early_return",
        """
if rng.random() < 0.15:
    if axis.kind == 'continuous':
        return float(axis.high if rng.random() < 0.5 else axis.low)
    return axis.values[-1 if rng.random() < 0.5 else 0]
""",
        needs_param="axis",
        helpers_only=True,
    ),
]
"""Statements :class:`InsertStatement` may add; each names only what it needs in scope
(``rng``, ``space``, ``traits``, ``personas``, ``axis``) plus ``_``-prefixed locals."""


def _is_docstring(site: Site) -> bool:
    stmt = site.stmt
    return (
        site.index == 0
        and site.depth == 0
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _is_def(stmt: ast.stmt | None) -> bool:
    return isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


def _library_ok(entry: LibraryStatement, site: Site) -> bool:
    if entry.helpers_only and site.func.name == "generate":
        return False
    if entry.needs_param:
        return site.depth == 0 and entry.needs_param in {a.arg for a in site.func.args.args}
    return True


class _StripReturns(ast.NodeTransformer):
    def visit_Return(self, node: ast.Return) -> ast.stmt:
        return ast.Expr(value=node.value) if node.value is not None else ast.Pass()


def library_facts(entry: LibraryStatement) -> Facts:
    """Name facts of a library statement; its returns are intended (early returns from a
    helper), so they are checked as plain expressions."""
    return Facts.of(_StripReturns().visit(entry.statement()))


class InsertStatement(CachedAstMutation):
    """Insert a statement into a function: a copy of a statement found elsewhere in the
    program (``copy_share`` of the time, when one fits) or one from :data:`STATEMENT_LIBRARY`.
    A statement is placed only where every name it reads is bound (:func:`.scope.fits`)."""

    def __init__(
        self,
        name: str = "insert_statement",
        library: list[LibraryStatement] | None = None,
        copy_share: float = 0.5,
    ) -> None:
        self.name = name
        self.library = STATEMENT_LIBRARY if library is None else library
        self.copy_share = copy_share
        self._facts = [(e, library_facts(e)) for e in self.library]

    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        all_sites = parsed.sites(ends=True)
        key = ("insert_statement", tuple(self.library))
        keep, copies, library = parsed.derived(key, lambda p: self._places(all_sites))
        if not copies and not library:
            raise NoSiteError("no statement fits anywhere")
        sites = [all_sites[i] for i in keep]
        if copies and (not library or rng.random() < self.copy_share):
            d, i = pick(rng, copies)
            donor, site = sites[d].stmt, sites[i]
            assert donor is not None
            stmt, what = fresh_copy(donor), f"copy of line {donor.lineno}"
        else:
            e, i = pick(rng, library)
            entry, site = self.library[e], sites[i]
            stmt, what = entry.statement(), f"library {entry.name}"
        where = _where(site)
        site.body.insert(site.index, stmt)
        return f"inserted {what} {where}"

    def _places(
        self, all_sites: list[Site]
    ) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int]]]:
        """The usable sites (indices into ``all_sites``), then (donor, site) copies and
        (library entry, site) insertions as indices into the usable sites."""
        keep = [
            k
            for k, s in enumerate(all_sites)
            if not _is_docstring(s) and not (s.stmt is None and _ends_flow(s.body))
        ]
        sites = [all_sites[k] for k in keep]
        donors = [
            (d, s.stmt, Facts.of(s.stmt))
            for d, s in enumerate(sites)
            if s.stmt is not None
            and not _is_def(s.stmt)
            and not isinstance(s.stmt, ast.Global | ast.Nonlocal)
        ]
        # a copy must do something: call or update, or bind a name read after it
        effective = [(d, stmt, f, _effectful(stmt)) for d, stmt, f in donors if not f.escapes]
        copies = [
            (d, i)
            for d, stmt, f, effectful in effective
            for i, s in enumerate(sites)
            if fits(f, s) and not _adjacent(stmt, s) and (effectful or f.binds & s.later_loads())
        ]
        library = [
            (e, i)
            for e, (entry, f) in enumerate(self._facts)
            for i, s in enumerate(sites)
            if _library_ok(entry, s) and fits(f, s)
        ]
        return keep, copies, library


def _ends_flow(body: list[ast.stmt]) -> bool:
    """Whether a block ends in a jump (code appended after it would never run)."""
    return bool(body) and isinstance(body[-1], ast.Return | ast.Raise | ast.Break | ast.Continue)


def _adjacent(donor: ast.stmt, site: Site) -> bool:
    """A copy placed right before or after itself is a duplication, not an insertion."""
    return any(
        0 <= i < len(site.body) and site.body[i] is donor for i in (site.index - 1, site.index)
    )


def _where(site: Site) -> str:
    stmt = site.stmt
    if stmt is not None:
        return f"before line {stmt.lineno} in {site.func.name}"
    return f"at the end of a block in {site.func.name}"


def _effectful(stmt: ast.stmt) -> bool:
    """Whether running a statement twice can differ from running it once: it calls
    something, updates in place, or is a compound statement."""
    if isinstance(stmt, ast.AugAssign):
        return True
    if isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.If | ast.With | ast.Try):
        return contains(stmt, (ast.Call, ast.AugAssign))
    return contains(stmt, (ast.Call,))


class DeleteStatement(CachedAstMutation):
    """Delete one statement from a function. Never deletes a statement containing a
    ``return``, a docstring, a nested ``def``, anything that updates a name an enclosing
    ``while`` loop tests (``attempts += 1``, ``personas.append(..)``: the loop could
    become endless) or a name the function returns (the loop filling ``personas``), or
    a statement that first binds a name read later (re-bindings may go: the earlier value
    stays). Mostly it removes redundant or inserted code."""

    def __init__(self, name: str = "delete_statement") -> None:
        self.name = name

    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        sites = parsed.sites()
        found = parsed.derived(
            "delete_statement", lambda p: [i for i, s in enumerate(sites) if self._deletable(s)]
        )
        candidates = [sites[i] for i in found]
        site = pick(rng, candidates) if candidates else None
        if site is None:
            raise NoSiteError("no statement can be deleted")
        stmt = site.body[site.index]
        del site.body[site.index]
        if not site.body:
            site.body.append(ast.Pass())
        return f"deleted line {stmt.lineno} ({type(stmt).__name__}) in {site.func.name}"

    @staticmethod
    def _deletable(site: Site) -> bool:
        stmt = site.stmt
        if stmt is None or _is_docstring(site) or _is_def(stmt) or isinstance(stmt, ast.Pass):
            return False
        if contains(stmt, (ast.Return, ast.Yield, ast.YieldFrom)):
            return False
        changed = updates(stmt)
        if changed & site.loop_guards:
            return False  # e.g. `attempts += 1` or `personas.append(..)` under `while`
        if changed & _returned(site.func):
            return False  # e.g. the loop that fills `personas`
        # a name it binds that is read later must already be bound here (the earlier
        # value stays); a binding elsewhere may come too late or sit in another branch
        fresh = stmt_binds(stmt) - site.bound_before
        return not (fresh and fresh & site.later_loads())


def _returned(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names the function's own ``return`` statements read."""
    return {
        name
        for stmt in iter_scope_stmts(fn.body)
        if isinstance(stmt, ast.Return)
        for name in expr_free(stmt.value)
    }


class DuplicateStatement(CachedAstMutation):
    """Copy a statement in place (right after itself). Only statements whose repetition
    can change the result (calls, in-place updates, loops) are duplicated; returns,
    docstrings and ``def``s are not."""

    def __init__(self, name: str = "duplicate_statement") -> None:
        self.name = name

    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        sites = parsed.sites()
        found = parsed.derived(
            "duplicate_statement",
            lambda p: [i for i, s in enumerate(sites) if _duplicable(s)],
        )
        candidates = [sites[i] for i in found]
        if not candidates:
            raise NoSiteError("no statement worth duplicating")
        site = pick(rng, candidates)
        stmt = site.body[site.index]
        site.body.insert(site.index + 1, fresh_copy(stmt))
        return f"duplicated line {stmt.lineno} ({type(stmt).__name__}) in {site.func.name}"


def _duplicable(s: Site) -> bool:
    """Whether a statement is worth duplicating in place (see :class:`DuplicateStatement`)."""
    stmt = s.stmt
    return (
        stmt is not None
        and not _is_docstring(s)
        and not _is_def(stmt)
        and not contains(stmt, (ast.Return, ast.Yield, ast.YieldFrom))
        and not (escapes(stmt) and not s.in_loop)
        and _effectful(stmt)
    )
