"""Parsed parents with their name analysis cached by source text, and a fast AST copier.

An operator edits a fresh parse of its parent, but what it analyses first (the statement
sites of :func:`.scope.function_sites`, the facts and shapes of movable statements, the
places a statement may go) depends only on the source text, and a parent is varied many
times. :class:`Parsed` pairs the fresh tree with a cache entry keyed by the source:

* :meth:`Parsed.sites` computes the sites once per source and stores each one's
  ``body`` list and ``func`` as *paths* from the module root (``(field, index)`` steps),
  so no tree is kept; on a later parse the paths are followed to the new tree's nodes;
* :meth:`Parsed.derived` stores any value computed from the unedited tree that holds no
  tree node (site indices, :class:`.scope.Facts`, statement shape keys);
* :meth:`Parsed.located` stores (node, value) pairs with the nodes as paths;
* :func:`check_child` keeps the contract check and AST hash of recent candidate children.

``Parsed(None, tree)`` caches nothing and computes everything on ``tree``: the plain
reference path the cached one is tested against (same children, same random draws).
"""

from __future__ import annotations

import ast
import copy
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Literal, TypeVar

from personaevo.operators.scope import Site, function_sites
from personaevo.programs import parse_and_check, tree_hash

T = TypeVar("T")
N = TypeVar("N", bound=ast.AST)

Step = tuple[str, int | None]
"""One step down a tree: a field name, and an index when the field is a list (``None``
for the list itself)."""
NodePath = tuple[Step, ...]

CACHE_SIZE = 64
"""Sources kept (least recently used dropped): islands x population parents, roughly."""


def fast_copy(value: Any) -> Any:
    """A deep copy of an AST node (or list of nodes), about 2.5x faster than
    :func:`copy.deepcopy`: fields and position attributes are copied recursively,
    immutable leaves (names, constants) and ``Load``/``Store`` contexts are shared."""
    if isinstance(value, ast.AST):
        if isinstance(value, ast.expr_context):
            return value
        new = value.__class__.__new__(value.__class__)
        target = new.__dict__
        for key, item in value.__dict__.items():
            target[key] = fast_copy(item) if isinstance(item, ast.AST | list) else item
        return new
    if isinstance(value, list):
        return [fast_copy(item) if isinstance(item, ast.AST | list) else item for item in value]
    return copy.deepcopy(value)


def _paths(tree: ast.AST) -> dict[int, NodePath]:
    """The path of every node and every list field in ``tree``, by ``id``."""
    found: dict[int, NodePath] = {id(tree): ()}
    todo: list[tuple[ast.AST, NodePath]] = [(tree, ())]
    while todo:
        node, path = todo.pop()
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                found[id(value)] = (*path, (field, None))
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        found[id(item)] = sub = (*path, (field, i))
                        todo.append((item, sub))
            elif isinstance(value, ast.AST):
                found[id(value)] = sub = (*path, (field, None))
                todo.append((value, sub))
    return found


def _follow(tree: ast.AST, path: NodePath) -> Any:
    obj: Any = tree
    for field, index in path:
        obj = getattr(obj, field)
        if index is not None:
            obj = obj[index]
    return obj


class _SiteTemplate:
    """A site with its tree references replaced by paths."""

    __slots__ = ("body", "fields", "func")

    def __init__(self, site: Site, paths: dict[int, NodePath]) -> None:
        self.body = paths[id(site.body)]
        self.func = paths[id(site.func)]
        self.fields = {k: v for k, v in site.__dict__.items() if k not in ("body", "func")}

    def bind(self, tree: ast.Module, resolved: dict[NodePath, Any]) -> Site:
        site = Site.__new__(Site)
        site.__dict__.update(self.fields)
        for name in ("body", "func"):
            path = getattr(self, name)
            if path not in resolved:
                resolved[path] = _follow(tree, path)
            site.__dict__[name] = resolved[path]
        return site


class _Entry:
    def __init__(self) -> None:
        self.sites: dict[bool, list[_SiteTemplate]] = {}
        self.derived: dict[Hashable, Any] = {}


_CACHE: OrderedDict[str, _Entry] = OrderedDict()
_LOCK = threading.Lock()


def _entry(source: str) -> _Entry:
    with _LOCK:
        entry = _CACHE.get(source)
        if entry is None:
            entry = _CACHE[source] = _Entry()
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(source)
        return entry


def clear_cache() -> None:
    """Forget every cached analysis."""
    with _LOCK:
        _CACHE.clear()
    _check_child.cache_clear()


_REFERENCE = False


class reference_mode:  # noqa: N801 (used as a context manager, like a function)
    """Within ``with reference_mode():`` nothing is cached (no analysis, no child check)
    and :func:`fresh_copy` falls back to :func:`copy.deepcopy`: the operators run
    exactly as they did before this module existed. Tests and
    ``experiments/bench_operators.py`` compare the two paths. The switch is process-wide."""

    def __enter__(self) -> None:
        global _REFERENCE
        self._previous, _REFERENCE = _REFERENCE, True

    def __exit__(self, *exc: object) -> None:
        global _REFERENCE
        _REFERENCE = self._previous


def caching() -> bool:
    """False inside :class:`reference_mode`."""
    return not _REFERENCE


def check_child(source: str) -> str | tuple[Literal["syntax", "contract"], str]:
    """The AST hash of a candidate child, or its failure kind and why (the first three
    contract problems). Cached by source text outside :class:`reference_mode`: operators
    often propose the same child again (deleting the same statement of a parent)."""
    return _check_child.__wrapped__(source) if _REFERENCE else _check_child(source)


@functools.lru_cache(maxsize=1024)
def _check_child(source: str) -> str | tuple[Literal["syntax", "contract"], str]:
    tree, problems = parse_and_check(source)
    if tree is None or problems:
        kind: Literal["syntax", "contract"] = (
            "syntax" if problems[0].kind == "syntax_error" else "contract"
        )
        return kind, "; ".join(str(p) for p in problems[:3])
    return tree_hash(tree)


def fresh_copy(node: Any) -> Any:
    """A deep copy of a node, to graft into another tree (:func:`fast_copy`)."""
    return copy.deepcopy(node) if _REFERENCE else fast_copy(node)


class Parsed:
    """A fresh parse of ``source`` for an operator to edit, with the source's analyses
    cached (``source=None``: nothing cached, everything computed on ``tree``).

    Ask for :meth:`sites` and :meth:`derived` values before editing ``tree``: they
    describe the unedited program.
    """

    def __init__(self, source: str | None, tree: ast.Module | None = None) -> None:
        if tree is None:
            if source is None:
                raise ValueError("Parsed needs a source or a tree")
            tree = ast.parse(source)
        self.source = None if _REFERENCE else source
        self.tree = tree
        self._resolved: dict[NodePath, Any] = {}
        self._paths: dict[int, NodePath] | None = None

    def sites(self, *, ends: bool = False) -> list[Site]:
        """:func:`.scope.function_sites` of the tree (cached per source)."""
        if self.source is None:
            return function_sites(self.tree, ends=ends)
        entry = _entry(self.source)
        templates = entry.sites.get(ends)
        if templates is None:
            found = function_sites(self.tree, ends=ends)
            paths = _paths(self.tree)
            entry.sites[ends] = [_SiteTemplate(s, paths) for s in found]
            return found
        return [t.bind(self.tree, self._resolved) for t in templates]

    def derived(self, key: Hashable, compute: Callable[[Parsed], T]) -> T:
        """``compute(self)``, cached per source under ``key``. The value must hold no
        node of the tree (indices, facts and strings do)."""
        if self.source is None:
            return compute(self)
        entry = _entry(self.source)
        if key not in entry.derived:
            entry.derived[key] = compute(self)
        return entry.derived[key]

    def located(
        self, key: Hashable, compute: Callable[[Parsed], list[tuple[N, T]]]
    ) -> list[tuple[N, T]]:
        """``compute(self)``: (node of the tree, value holding no node) pairs, cached per
        source under ``key`` with each node stored as its path and found again in a
        later parse."""
        if self.source is None:
            return compute(self)
        entry = _entry(self.source)
        stored = entry.derived.get(key)
        if stored is None:
            found = compute(self)
            if self._paths is None:
                self._paths = _paths(self.tree)
            entry.derived[key] = [(self._paths[id(node)], value) for node, value in found]
            return found
        return [(_follow(self.tree, path), value) for path, value in stored]
