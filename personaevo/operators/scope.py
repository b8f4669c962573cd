"""Name analysis on program ASTs: which names a statement reads and binds, and which names
are in scope at each statement position of a function.

The analysis is deliberately approximate (it is used to *prefer* edits that will run, not
to prove anything). Positions are judged conservatively -- after an ``if`` only names
bound on both branches count as bound, after a loop none of those bound inside it --
while a statement's own free names are judged loosely; a nested function sees what its
enclosing one bound before the ``def``; ``global``/``nonlocal`` and walrus targets are
ignored. Every child is still parsed and contract-checked, and
the evolution loop runs it in the sandbox.
"""

from __future__ import annotations

import ast
import builtins
import functools
from collections.abc import Iterator
from dataclasses import dataclass

BUILTIN_NAMES: frozenset[str] = frozenset(dir(builtins))

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def target_names(target: ast.AST) -> set[str]:
    """Plain names a target binds (``a``, ``a, b``, ``*rest``; not ``x[i]`` or ``x.a``)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return set().union(*(target_names(e) for e in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return target_names(target.value)
    return set()


def expr_free(node: ast.AST | None) -> set[str]:
    """Names an expression (or any node, scanned as expressions) reads from its scope.

    Comprehension targets and lambda parameters are local to their own scope and are
    not counted; the walrus operator's target is neither counted nor bound here.
    """
    free: set[str] = set()
    todo: list[ast.AST] = [] if node is None else [node]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Store):
                free.add(node.id)
        elif isinstance(node, _COMPREHENSIONS):
            free |= _comprehension_free(node)
        elif isinstance(node, ast.Lambda):
            params = {a.arg for a in _all_args(node.args)}
            defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
            todo.extend(defaults)
            free |= expr_free(node.body) - params
        else:
            todo.extend(ast.iter_child_nodes(node))
    return free


def _comprehension_free(
    node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp,
) -> set[str]:
    bound: set[str] = set()
    free: set[str] = set()
    for gen in node.generators:
        free |= expr_free(gen.iter) - bound
        bound |= target_names(gen.target)
        for cond in gen.ifs:
            free |= expr_free(cond) - bound
    parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    for part in parts:
        free |= expr_free(part) - bound
    return free


def _all_args(args: ast.arguments) -> list[ast.arg]:
    out = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    out += [a for a in (args.vararg, args.kwarg) if a is not None]
    return out


def params(fn: FunctionNode) -> set[str]:
    """The parameter names of a function."""
    return {a.arg for a in _all_args(fn.args)}


def stmt_binds(stmt: ast.stmt) -> set[str]:
    """Names a statement binds in the scope it runs in (nested scopes excluded; a
    ``def``/``class`` binds its own name; walrus targets are not counted)."""
    names: set[str] = set()
    todo: list[ast.stmt] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Assign):
            for target in node.targets:
                names |= target_names(target)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
            names |= target_names(node.target)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    names |= target_names(item.optional_vars)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                names |= target_names(target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".", 1)[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue
        elif isinstance(node, ast.Try):
            for handler in node.handlers:
                if handler.name:
                    names.add(handler.name)
                todo.extend(handler.body)
        for block in ("body", "orelse", "finalbody"):
            todo.extend(getattr(node, block, None) or [])
    return names


def block_free(stmts: list[ast.stmt], bound: set[str] | None = None) -> set[str]:
    """Names a block of statements reads before (or without) binding them itself."""
    bound = set(bound or ())
    free: set[str] = set()
    for stmt in stmts:
        free |= stmt_free(stmt, bound)
        bound |= stmt_binds(stmt)
    return free


def stmt_free(stmt: ast.stmt, bound: set[str] | None = None) -> set[str]:
    """Names one statement reads that are not in ``bound`` nor bound earlier inside it."""
    bound = set(bound or ())
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        outer = set().union(*(expr_free(d) for d in stmt.decorator_list), set())
        outer |= expr_free(stmt.args)
        inner = block_free(stmt.body, params(stmt)) - function_locals(stmt)
        return (outer | inner) - bound
    if isinstance(stmt, ast.ClassDef):
        heads = [*stmt.bases, *stmt.keywords, *stmt.decorator_list]
        return (set().union(set(), *(expr_free(h) for h in heads)) | block_free(stmt.body)) - bound
    if isinstance(stmt, ast.For | ast.AsyncFor):
        free = expr_free(stmt.iter) - bound
        inner = bound | target_names(stmt.target)
        return free | block_free(stmt.body, inner) | block_free(stmt.orelse, inner)
    if isinstance(stmt, ast.While | ast.If):
        free = expr_free(stmt.test) - bound
        return free | block_free(stmt.body, bound) | block_free(stmt.orelse, bound)
    if isinstance(stmt, ast.With | ast.AsyncWith):
        free: set[str] = set()
        inner = set(bound)
        for item in stmt.items:
            free |= expr_free(item.context_expr) - inner
            if item.optional_vars is not None:
                inner |= target_names(item.optional_vars)
        return free | block_free(stmt.body, inner)
    if isinstance(stmt, ast.Try):
        free = block_free(stmt.body, bound)
        for handler in stmt.handlers:
            free |= expr_free(handler.type) - bound
            free |= block_free(handler.body, bound | ({handler.name} if handler.name else set()))
        return free | block_free(stmt.orelse, bound) | block_free(stmt.finalbody, bound)
    if isinstance(stmt, ast.AugAssign):
        return (expr_free(stmt.value) | expr_free(_as_load(stmt.target))) - bound
    if isinstance(stmt, ast.Global | ast.Nonlocal):
        return set()
    return expr_free(stmt) - bound


def _as_load(target: ast.expr) -> ast.expr:
    if isinstance(target, ast.Name):
        return ast.Name(id=target.id, ctx=ast.Load())
    return target


def function_locals(fn: FunctionNode) -> set[str]:
    """Every name local to a function: its parameters and names bound anywhere in it."""
    names = params(fn)
    for node in iter_scope_stmts(fn.body):
        names |= stmt_binds(node)
    return names


def iter_scope_stmts(stmts: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in a block, recursively, without entering nested defs/classes."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from iter_scope_stmts(getattr(stmt, name, []) or [])
        for handler in getattr(stmt, "handlers", []) or []:
            yield from iter_scope_stmts(handler.body)


def module_bindings(tree: ast.Module) -> dict[str, int]:
    """Top-level names and the index (in ``tree.body``) of the first statement binding each."""
    found: dict[str, int] = {}
    for i, stmt in enumerate(tree.body):
        for name in stmt_binds(stmt):
            found.setdefault(name, i)
    return found


def contains(stmt: ast.AST, kinds: tuple[type, ...]) -> bool:
    """Whether ``stmt`` contains a node of ``kinds`` in its own scope (nested defs skipped)."""
    todo = list(ast.iter_child_nodes(stmt))
    while todo:
        node = todo.pop()
        if isinstance(node, kinds):
            return True
        if isinstance(node, _SCOPES):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return isinstance(stmt, kinds)


_RETURNS = (ast.Return, ast.Yield, ast.YieldFrom, ast.Await)


def _scan(stmt: ast.stmt) -> tuple[set[str], bool, bool]:
    """One pass over a statement's own scope: (names changed in place, whether it
    returns/yields, whether it breaks/continues out of a loop it is not inside of)."""
    changed: set[str] = set()
    returns = loose = False
    todo: list[tuple[ast.AST, bool]] = [(stmt, False)]
    while todo:
        node, in_loop = todo.pop()
        if isinstance(node, _RETURNS):
            returns = True
        elif isinstance(node, ast.Break | ast.Continue):
            loose = loose or not in_loop
        elif isinstance(node, ast.AugAssign):
            changed |= target_names(node.target)
        elif isinstance(node, ast.Subscript | ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name):
                changed.add(node.value.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            changed.add(node.func.value.id)
        if isinstance(node, _SCOPES) and node is not stmt:
            continue
        if isinstance(node, _LOOPS):
            todo.extend((child, True) for child in node.body)
            todo.extend((child, in_loop) for child in node.orelse)
            head = [node.test] if isinstance(node, ast.While) else [node.target, node.iter]
            todo.extend((child, in_loop) for child in head)
            continue
        todo.extend((child, in_loop) for child in ast.iter_child_nodes(node))
    return changed, returns, loose


def escapes(stmt: ast.stmt) -> bool:
    """Whether a statement returns/yields, or breaks/continues out of a loop it is not
    itself inside of -- i.e. moving it elsewhere would change control flow around it."""
    _, returns, loose = _scan(stmt)
    return returns or loose


def updates(stmt: ast.stmt) -> set[str]:
    """Names a statement (re)binds or changes in place in its own scope: ``x = ..``,
    ``x += ..``, ``x[i] = ..``, ``x.append(..)`` (any method call counts as a change)."""
    return stmt_binds(stmt) | _scan(stmt)[0]


@dataclass(frozen=True)
class Facts:
    """What placing a statement somewhere depends on, computed once per statement."""

    free: frozenset[str]
    """Names read before the statement binds them (with nothing bound beforehand)."""
    binds: frozenset[str]
    updates: frozenset[str]
    escapes: bool
    returns: bool
    augmented: bool

    @classmethod
    def of(cls, stmt: ast.stmt) -> Facts:
        binds = stmt_binds(stmt)
        changed, returns, loose = _scan(stmt)
        return cls(
            free=frozenset(stmt_free(stmt)),
            binds=frozenset(binds),
            updates=frozenset(binds | changed),
            escapes=returns or loose,
            returns=returns,
            augmented=isinstance(stmt, ast.AugAssign),
        )


@dataclass
class Site:
    """A statement position inside a function: ``body[index]`` (``index == len(body)``
    is the end of the block), with what is known in scope there."""

    body: list[ast.stmt]
    index: int
    func: FunctionNode
    bound_before: frozenset[str]
    """Local names (parameters included) bound before this position."""
    outer: frozenset[str]
    """Names visible from the module and enclosing functions (bound before the ``def``)."""
    locals: frozenset[str]
    """Every name local to ``func`` (bound anywhere in it)."""
    loop_guards: frozenset[str] = frozenset()
    """Names read by the test of an enclosing ``while`` loop of the same function."""
    in_loop: bool = False
    depth: int = 0
    loads: tuple[tuple[int, str], ...] = ()
    """(line, name) of every name the function reads, for :meth:`later_loads`."""

    @property
    def stmt(self) -> ast.stmt | None:
        return self.body[self.index] if self.index < len(self.body) else None

    @functools.cached_property
    def visible(self) -> frozenset[str]:
        """Every name a statement placed here may read."""
        return self.bound_before | self.outer | BUILTIN_NAMES

    @functools.cached_property
    def not_local(self) -> frozenset[str]:
        """Outer and builtin names that are not local to the function: binding one here
        would make it local everywhere in the function."""
        return (self.outer | BUILTIN_NAMES) - self.locals

    def later_loads(self) -> set[str]:
        """Names read after ``body[index]`` in source order in this function (and, in a
        loop, anywhere in the loop: the next iteration runs earlier code again)."""
        stmt = self.stmt
        end = getattr(stmt, "end_lineno", None) or 0
        start = getattr(stmt, "lineno", None) or 0
        if self.in_loop:
            return {name for line, name in self.loads if not start <= line <= end}
        return {name for line, name in self.loads if line > end}


def function_sites(tree: ast.Module, *, ends: bool = False) -> list[Site]:
    """Every statement position in every function of a module (nested ones included).

    With ``ends`` the end of each block is a site too (``index == len(body)``), as an
    insertion point.
    """
    module_names = frozenset(module_bindings(tree))
    sites: list[Site] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            _walk_function(stmt, module_names, sites, ends)
    return sites


def _walk_function(fn: FunctionNode, outer: frozenset[str], sites: list[Site], ends: bool) -> None:
    local = frozenset(function_locals(fn))
    loads = tuple(
        (getattr(n, "lineno", 0), n.id)
        for n in ast.walk(fn)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    )

    def site(body: list[ast.stmt], i: int, bound: set[str], ctx: tuple) -> Site:
        guards, in_loop, depth = ctx
        return Site(body, i, fn, frozenset(bound), outer, local, guards, in_loop, depth, loads)

    def walk(body: list[ast.stmt], bound: set[str], ctx: tuple) -> set[str]:
        guards, in_loop, depth = ctx
        inner_ctx = (guards, in_loop, depth + 1)
        bound = set(bound)
        for i, stmt in enumerate(body):
            sites.append(site(body, i, bound, ctx))
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                # A nested function sees what the enclosing one bound before the def.
                _walk_function(stmt, outer | frozenset(bound), sites, ends)
            elif isinstance(stmt, ast.For | ast.AsyncFor):
                # a loop may run zero times: what it binds is not bound after it
                inner = bound | target_names(stmt.target)
                walk(stmt.body, inner, (guards, True, depth + 1))
                walk(stmt.orelse, bound, inner_ctx)
            elif isinstance(stmt, ast.While):
                loop_guards = guards | frozenset(expr_free(stmt.test))
                walk(stmt.body, bound, (loop_guards, True, depth + 1))
                walk(stmt.orelse, bound, inner_ctx)
            elif isinstance(stmt, ast.If):
                # bound afterwards only when bound on both branches
                bound |= walk(stmt.body, bound, inner_ctx) & walk(stmt.orelse, bound, inner_ctx)
            elif isinstance(stmt, ast.With | ast.AsyncWith | ast.Try):
                extra = set()
                if isinstance(stmt, ast.With | ast.AsyncWith):
                    for item in stmt.items:
                        if item.optional_vars is not None:
                            extra |= target_names(item.optional_vars)
                bound |= walk(stmt.body, bound | extra, inner_ctx)
                for name in ("orelse", "finalbody"):
                    block = getattr(stmt, name, None)
                    if block:
                        walk(block, bound, inner_ctx)
                for handler in getattr(stmt, "handlers", []) or []:
                    named = {handler.name} if handler.name else set()
                    walk(handler.body, bound | named, inner_ctx)
            if not isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.If | ast.Try):
                bound |= stmt_binds(stmt)
        if ends:
            sites.append(site(body, len(body), bound, ctx))
        return bound

    walk(fn.body, params(fn), (frozenset(), False, 0))


def fits(stmt: ast.stmt | Facts, site: Site, extra: frozenset[str] = frozenset()) -> bool:
    """Whether a statement can be placed at ``site``: everything it reads is visible
    there (or in ``extra``, names that will be supplied), it does not make a name local
    that the function reads from outside, it does not re-bind a name guarding an
    enclosing ``while`` loop (which could make it endless), and it neither returns nor
    breaks out of a loop it is not in."""
    f = stmt if isinstance(stmt, Facts) else Facts.of(stmt)
    if not (f.free - site.bound_before) <= site.visible | extra:
        return False
    if f.binds & site.not_local:
        return False
    if f.binds & site.loop_guards and not f.augmented:
        return False
    return not (f.escapes and (f.returns or not site.in_loop))
