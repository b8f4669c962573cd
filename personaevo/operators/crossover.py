"""Two-parent operators: exchange top-level helper functions or statement blocks.

Whatever is grafted into a child brings along the module-level imports, constants and
helpers it reads that the child lacks (:func:`module_deps`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np

from personaevo.operators.analysis import Parsed, caching, fresh_copy
from personaevo.operators.base import (
    NoSiteError,
    VariationResult,
    failed,
    make_child,
    parent_hashes,
    pick,
    unparse,
)
from personaevo.operators.scope import (
    BUILTIN_NAMES,
    Facts,
    FunctionNode,
    Site,
    fits,
    module_bindings,
    stmt_binds,
    stmt_free,
)

ENTRY = "generate"


# --------------------------------------------------------------------------- dependencies


def module_deps(donor: ast.Module, needed: set[str], recipient: ast.Module) -> list[ast.stmt]:
    """Top-level statements of ``donor`` (in donor order) that bind the names in
    ``needed`` the recipient does not bind, with what they need in turn.

    Raises :class:`NoSiteError` when a name is bound by neither module nor a builtin, or
    when a statement to copy would re-bind one of the recipient's names.
    """
    have = set(module_bindings(recipient)) | BUILTIN_NAMES
    where = module_bindings(donor)
    chosen: set[int] = set()
    todo = sorted(needed - have)
    while todo:
        name = todo.pop()
        if name not in where:
            raise NoSiteError(f"'{name}' is bound by neither parent")
        index = where[name]
        if index in chosen:
            continue
        stmt = donor.body[index]
        clash = stmt_binds(stmt) & (have - BUILTIN_NAMES)
        if clash and not isinstance(stmt, ast.Import | ast.ImportFrom):
            raise NoSiteError(f"copying line {stmt.lineno} would re-bind {sorted(clash)}")
        chosen.add(index)
        todo.extend(sorted(stmt_free(stmt) - have - {name}))
    return [fresh_copy(donor.body[i]) for i in sorted(chosen)]


def insert_deps(tree: ast.Module, deps: list[ast.stmt]) -> None:
    """Put imports after the recipient's imports and everything else before ``generate``."""
    imports = [d for d in deps if isinstance(d, ast.Import | ast.ImportFrom)]
    others = [d for d in deps if not isinstance(d, ast.Import | ast.ImportFrom)]
    last_import = max(
        (i for i, s in enumerate(tree.body) if isinstance(s, ast.Import | ast.ImportFrom)),
        default=_after_docstring(tree) - 1,
    )
    tree.body[last_import + 1 : last_import + 1] = imports
    at = _entry_index(tree)
    tree.body[at:at] = others


def _after_docstring(tree: ast.Module) -> int:
    first = tree.body[0] if tree.body else None
    doc = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    return 1 if doc else 0


def _entry_index(tree: ast.Module) -> int:
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.FunctionDef) and stmt.name == ENTRY:
            return i
    return len(tree.body)


def _helpers(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name != ENTRY}


def _positional(fn: FunctionNode) -> tuple[str, ...]:
    return tuple(a.arg for a in (*fn.args.posonlyargs, *fn.args.args))


# --------------------------------------------------------------------------- base

Graft = Callable[[ast.Module], str]
"""Edits the recipient tree in place and returns a description."""

DonorTree = Callable[[], ast.Module]
"""The donor parent as it was before either child was made (read only)."""


def _pristine(parsed: Parsed) -> DonorTree:
    """The unedited donor for a graft made later (the donor's own tree is edited when
    the other child is made): a fresh parse of its source, or a copy taken now."""
    source = parsed.source
    if source is not None:
        return lambda: ast.parse(source)
    copied = fresh_copy(parsed.tree)
    return lambda: copied


class _TwoChildren:
    """Runs a crossover: each direction yields a graft (or a reason there is none)."""

    name = "crossover"

    def __call__(
        self, a: str, b: str, rng: np.random.Generator
    ) -> tuple[VariationResult, VariationResult]:
        hashes = parent_hashes(a, b)
        if hashes is None:
            bad = failed(self.name, [], "invalid-parent", "a parent does not parse")
            return bad, bad
        ha, hb = hashes
        parsed_a, parsed_b = Parsed(a), Parsed(b)
        tree_a, tree_b = parsed_a.tree, parsed_b.tree
        try:
            grafts = self.plan_parsed(parsed_a, parsed_b, rng)
        except Exception as exc:  # an operator bug must not stop the evolution loop
            err = failed(self.name, [ha, hb], "error", f"{type(exc).__name__}: {exc}")
            return err, err.model_copy(update={"parents": [hb, ha]})
        first = self._child(tree_a, grafts[0], [ha, hb])
        second = self._child(tree_b, grafts[1], [hb, ha])
        return first, second

    def plan(
        self, a: ast.Module, b: ast.Module, rng: np.random.Generator
    ) -> tuple[Graft | str, Graft | str]:
        """One graft per child (into ``a``, into ``b``), or a string saying why none."""
        return self.plan_parsed(Parsed(None, a), Parsed(None, b), rng)

    def plan_parsed(
        self, a: Parsed, b: Parsed, rng: np.random.Generator
    ) -> tuple[Graft | str, Graft | str]:
        """:meth:`plan`, with the per-source analysis cache (:class:`.analysis.Parsed`)."""
        raise NotImplementedError

    def _child(self, tree: ast.Module, graft: Graft | str, parents: list[str]) -> VariationResult:
        if isinstance(graft, str):
            return failed(self.name, parents, "no-site", graft)
        try:
            detail = graft(tree)
        except NoSiteError as exc:
            return failed(self.name, parents, "no-site", str(exc))
        except Exception as exc:  # an operator bug must not stop the evolution loop
            return failed(self.name, parents, "error", f"{type(exc).__name__}: {exc}")
        return make_child(unparse(tree), self.name, parents, detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------- helpers


@dataclass
class _HelperMove:
    kind: str  # "swap" | "rewire" | "import"
    helper: ast.FunctionDef
    replaces: str | None = None


def _helper_moves(recipient: ast.Module, donor: ast.Module) -> list[_HelperMove]:
    mine, theirs = _helpers(recipient), _helpers(donor)
    bound = set(module_bindings(recipient))
    moves: list[_HelperMove] = []
    for name, fn in theirs.items():
        if name in mine:
            if ast.dump(mine[name]) != ast.dump(fn):
                moves.append(_HelperMove("swap", fn, name))
            continue
        if name in bound:
            continue
        same_sig = [g for g in mine.values() if _positional(g) == _positional(fn)]
        for g in same_sig:
            moves.append(_HelperMove("rewire", fn, g.name))
        moves.append(_HelperMove("import", fn))
    return moves


_MOVE_WEIGHT = {"swap": 4.0, "rewire": 4.0, "import": 1.0}


def _apply_helper(move: _HelperMove, donor: DonorTree) -> Graft:
    # Copied now: the donor parent is itself edited when the other child is made.
    helper = fresh_copy(move.helper)
    assert isinstance(helper, ast.FunctionDef)

    def graft(tree: ast.Module) -> str:
        fn = fresh_copy(helper)
        assert isinstance(fn, ast.FunctionDef)
        if move.kind == "swap":
            for i, stmt in enumerate(tree.body):
                if isinstance(stmt, ast.FunctionDef) and stmt.name == move.replaces:
                    tree.body[i] = fn
                    break
        else:
            tree.body.insert(_entry_index(tree), fn)
            if move.kind == "rewire":
                _rename_loads(tree, str(move.replaces), fn.name)
                _drop_unused_def(tree, str(move.replaces))
        deps = module_deps(donor(), stmt_free(helper) - {fn.name}, tree)
        insert_deps(tree, deps)
        extra = f" (+{len(deps)} module statements)" if deps else ""
        if move.kind == "swap":
            return f"swapped in the other parent's {fn.name}{extra}"
        if move.kind == "rewire":
            return f"replaced {move.replaces} with the other parent's {fn.name}{extra}"
        return f"imported the other parent's {fn.name}{extra}"

    return graft


def _rename_loads(tree: ast.Module, old: str, new: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == old and isinstance(node.ctx, ast.Load):
            node.id = new


def _drop_unused_def(tree: ast.Module, name: str) -> None:
    used = any(
        isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
        for n in ast.walk(tree)
    )
    if not used:
        tree.body = [
            s for s in tree.body if not (isinstance(s, ast.FunctionDef) and s.name == name)
        ]


class HelperCrossover(_TwoChildren):
    """Exchange top-level helper functions (never ``generate``) between two parents.

    Per child, from the other parent it takes one helper and either

    * ``swap``: replaces the child's helper of the same name (when they differ);
    * ``rewire``: replaces a child's helper with the same positional parameters, pointing
      its callers at the incoming one;
    * ``import``: adds a helper the child lacks (it is then material for later edits),

    weighted 4 : 4 : 1. When the first child swaps a same-named helper, the second takes
    that helper's other version, so the pair is an exact exchange. The helper's module
    imports, constants and helpers come along (:func:`module_deps`).
    """

    def __init__(self, name: str = "crossover_helpers") -> None:
        self.name = name

    def plan_parsed(
        self, a: Parsed, b: Parsed, rng: np.random.Generator
    ) -> tuple[Graft | str, Graft | str]:
        into_a, into_b = _helper_moves(a.tree, b.tree), _helper_moves(b.tree, a.tree)
        first: Graft | str = "the other parent has no helper to take"
        second: Graft | str = first
        swapped: str | None = None
        if into_a:
            move = pick(rng, into_a, [_MOVE_WEIGHT[m.kind] for m in into_a])
            first = _apply_helper(move, _pristine(b))
            swapped = move.helper.name if move.kind == "swap" else None
        mirror = [m for m in into_b if m.kind == "swap" and m.helper.name == swapped]
        if mirror:
            second = _apply_helper(mirror[0], _pristine(a))
        elif into_b:
            move = pick(rng, into_b, [_MOVE_WEIGHT[m.kind] for m in into_b])
            second = _apply_helper(move, _pristine(a))
        return first, second


# --------------------------------------------------------------------------- blocks


@dataclass
class _Block:
    """A statement that may leave its place, with its name facts precomputed."""

    site: Site
    facts: Facts
    shape: Hashable
    """The statement's AST with string literals blanked (:func:`_shape`, or the equal-
    exactly-when key of :func:`_shape_size`): statements differing only in text (a
    persona id prefix) are not worth exchanging."""
    size: int

    @property
    def stmt(self) -> ast.stmt:
        stmt = self.site.stmt
        assert stmt is not None
        return stmt


def _blocks(parsed: Parsed) -> list[_Block]:
    """The movable statements of a program (their facts cached per source)."""
    sites = parsed.sites()
    found = parsed.derived("blocks", lambda p: _block_facts(sites))
    return [_Block(sites[i], facts, shape, size) for i, facts, shape, size in found]


def _block_facts(sites: list[Site]) -> list[tuple[int, Facts, Hashable, int]]:
    found: list[tuple[int, Facts, Hashable, int]] = []
    memo: dict[int, tuple[Hashable, int]] = {}
    for i, site in enumerate(sites):
        stmt = site.stmt
        if stmt is None or isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(stmt, ast.ClassDef | ast.Global | ast.Nonlocal | ast.Pass):
            continue
        if (
            site.index == 0
            and site.depth == 0
            and isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Constant)
        ):
            continue  # docstring
        facts = Facts.of(stmt)
        if not facts.escapes:
            if caching():
                found.append((i, facts, *_shape_size(stmt, memo)))
            else:
                found.append((i, facts, _shape(stmt), sum(1 for _ in ast.walk(stmt))))
    return found


def _shape_size(node: ast.AST, memo: dict[int, tuple[Hashable, int]]) -> tuple[Hashable, int]:
    """A key equal for two nodes exactly when their :func:`_shape` dumps are equal (the
    node type, then each field: a node's key, a tuple for a list, the type and ``repr``
    of a value; string constants all alike), and the number of nodes :func:`ast.walk`
    visits. Computed bottom-up once per node (``memo`` by ``id``: one tree, kept alive
    while it is used), so nested statements cost nothing more."""
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        result: tuple[Hashable, int] = (("Constant", ""), 1)
    else:
        key: list[Hashable] = [type(node).__name__]
        size = 1
        for name in node._fields:
            value = getattr(node, name, None)  # ast.dump omits absent and None alike
            if isinstance(value, ast.AST):
                sub, n = _shape_size(value, memo)
                key.append(sub)
                size += n
            elif isinstance(value, list):
                items: list[Hashable] = []
                for item in value:
                    if isinstance(item, ast.AST):
                        sub, n = _shape_size(item, memo)
                        items.append(sub)
                        size += n
                    else:
                        items.append((type(item).__name__, repr(item)))
                key.append(tuple(items))
            else:
                key.append(None if value is None else (type(value).__name__, repr(value)))
        result = (tuple(key), size)
    memo[id(node)] = result
    return result


class _BlankStrings(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.Constant(value="") if isinstance(node.value, str) else node


def _shape(stmt: ast.stmt) -> str:
    return ast.dump(_BlankStrings().visit(fresh_copy(stmt)))


def _compatible(
    out: _Block, later: set[str], incoming: _Block, donor_names: frozenset[str]
) -> bool:
    """Whether ``incoming`` (from the donor) can replace ``out`` at its site: it fits
    there (reading only names bound there or supplied by the donor's module), binds what
    later code reads from ``out``, and keeps updating the names an enclosing ``while``
    tests that ``out`` updated (or the loop could become endless)."""
    site = out.site
    if incoming.shape == out.shape or not fits(incoming.facts, site, donor_names):
        return False
    needed = (out.facts.binds & later) - site.bound_before
    guards = out.facts.updates & site.loop_guards
    return needed <= incoming.facts.binds and guards <= incoming.facts.updates


def _pairs(
    recipient: list[_Block], donor: list[_Block], donor_names: frozenset[str]
) -> list[tuple[_Block, _Block]]:
    later = {id(b): b.site.later_loads() for b in recipient}
    return [
        (out, inc)
        for out in recipient
        for inc in donor
        if _compatible(out, later[id(out)], inc, donor_names)
    ]


def _apply_block(out: _Block, incoming: _Block, donor: DonorTree) -> Graft:
    # Copied now: the donor parent is itself edited when the other child is made.
    stmt = fresh_copy(incoming.stmt)
    assert isinstance(stmt, ast.stmt)
    site, origin = out.site, f"line {stmt.lineno} of the other parent's {incoming.site.func.name}"
    missing = set(incoming.facts.free - site.visible)

    def graft(tree: ast.Module) -> str:
        # ``site`` points into ``tree``: the recipient's own parse, edited in place.
        old = site.body[site.index]
        site.body[site.index] = fresh_copy(stmt)
        deps = module_deps(donor(), missing, tree)
        insert_deps(tree, deps)
        extra = f" (+{len(deps)} module statements)" if deps else ""
        return f"line {old.lineno} of {site.func.name} <- {origin}{extra}"

    return graft


class BlockCrossover(_TwoChildren):
    """Exchange a statement (a simple one or a whole loop/branch) between two parents'
    functions. A pair is exchanged only where each incoming statement reads names bound
    at its new place (or module names the donor can supply) and binds whatever the code
    after the outgoing one reads from it, and only when the two differ in more than
    string literals. Pairs are drawn with weight growing with their size (whole loops
    more than single lines). An exact two-way exchange is preferred; when none exists
    each child takes a one-way graft."""

    def __init__(self, name: str = "crossover_blocks") -> None:
        self.name = name

    def plan_parsed(
        self, a: Parsed, b: Parsed, rng: np.random.Generator
    ) -> tuple[Graft | str, Graft | str]:
        blocks_a, blocks_b = _blocks(a), _blocks(b)
        names_a = a.derived("module_names", lambda p: frozenset(module_bindings(p.tree)))
        names_b = b.derived("module_names", lambda p: frozenset(module_bindings(p.tree)))
        into_a = _pairs(blocks_a, blocks_b, names_b)
        into_b = _pairs(blocks_b, blocks_a, names_a)
        reverse = {(id(out), id(inc)) for out, inc in into_b}
        both = [(o, i) for o, i in into_a if (id(i), id(o)) in reverse]
        why = "no statement of the other parent fits"
        if both:
            out, inc = pick(rng, both, _weights(both))
            return _apply_block(out, inc, _pristine(b)), _apply_block(inc, out, _pristine(a))
        first = _apply_block(*pick(rng, into_a, _weights(into_a)), _pristine(b)) if into_a else why
        second = _apply_block(*pick(rng, into_b, _weights(into_b)), _pristine(a)) if into_b else why
        return first, second


def _weights(pairs: list[tuple[_Block, _Block]]) -> list[float]:
    """Larger exchanges are likelier: weight by the AST sizes of both statements."""
    return [float(out.size + inc.size) for out, inc in pairs]
