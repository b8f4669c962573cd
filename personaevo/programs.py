"""The persona-generator program contract, its static checks, and program identity.

A *generator program* is one Python source file that defines, at module top level::

    def generate(space, n, rng, llm=None) -> list[dict]:
        ...

* ``space`` -- the trait space to cover (an opaque, picklable object; in the product a
  ``personaevo`` ``TraitSpace``).
* ``n`` -- how many personas to return.
* ``rng`` -- a :class:`numpy.random.Generator`, the *only* source of randomness. The same
  program, space, ``n`` and seed must give the same personas.
* ``llm`` -- an optional language-model client (``None`` when there is none). In the
  sandbox it is a proxy whose public methods are forwarded to the host's client; their
  arguments and results must be JSON values.

It returns a list of personas; each a dict with at least ``"id"`` (a str or int) and
``"traits"`` (a dict of trait name to JSON value), optionally ``"description"`` (str) and
``"profile"`` (any JSON value). The output must be JSON: NaN/Infinity and arbitrary
objects are rejected (numpy scalars and arrays are converted to plain numbers/lists).

A program may import only the modules in :data:`ALLOWED_MODULES` (and their submodules,
minus :data:`FORBIDDEN_MODULES`). ``random``, ``os``, ``sys``, ``subprocess``, ``socket``,
``time`` and everything else is refused. The static check here is early, readable feedback
for program authors (people or mutation operators) -- it is *not* the security boundary;
:mod:`personaevo.sandbox` is, and it holds for programs that bypass this check.

A program's identity is :func:`ast_hash`: the SHA-256 of its normalised AST, so comments,
docstrings and formatting do not change it (stable within one Python minor version).
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ALLOWED_MODULES",
    "CONTRACT_VERSION",
    "ENTRY_POINT",
    "FORBIDDEN_MODULES",
    "FORBIDDEN_NAMES",
    "ContractError",
    "ContractProblem",
    "GeneratorProgram",
    "ProblemKind",
    "ast_hash",
    "check_contract",
    "load_program",
]

CONTRACT_VERSION = "1"
"""Version of the generator contract; bump it when the signature or allow-list changes."""

ENTRY_POINT = "generate"
EXPECTED_PARAMS = ("space", "n", "rng", "llm")

ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "re",
        "statistics",
        "string",
        "textwrap",
        "typing",
        "numpy",
        "scipy",
        "allpairspy",
        "personaevo",
    }
)
"""Top-level modules a program may import; their submodules are allowed too."""

FORBIDDEN_MODULES: frozenset[str] = frozenset(
    {
        "numpy.ctypeslib",
        "numpy.f2py",
        "numpy.distutils",
        "numpy.testing",
        "scipy._lib",
        "personaevo.sandbox",
        "personaevo.programs",
        "personaevo.cli",
    }
)
"""Submodules of allowed packages that are refused (with their own submodules)."""

FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "__import__",
        "breakpoint",
        "compile",
        "delattr",
        "eval",
        "exec",
        "exit",
        "globals",
        "help",
        "input",
        "locals",
        "memoryview",
        "open",
        "quit",
        "setattr",
        "vars",
    }
)
"""Builtins a program may not name: escape hatches, I/O, or interpreter control."""

_ALLOWED_DUNDERS = frozenset({"__name__", "__doc__", "__init__", "__qualname__", "__all__"})
_NUMPY_RANDOM_OK = frozenset(
    {
        "Generator",
        "default_rng",
        "SeedSequence",
        "BitGenerator",
        "PCG64",
        "PCG64DXSM",
        "Philox",
        "SFC64",
        "MT19937",
    }
)
_HINTS = {
    "random": "use the `rng` argument (a numpy.random.Generator) for randomness",
    "time": "programs must be deterministic given `rng`",
    "uuid": "derive ids from a counter or from `rng`",
}

ProblemKind = Literal["syntax_error", "contract_violation"]


class ContractProblem(BaseModel):
    """One reason a program does not meet the contract."""

    model_config = ConfigDict(frozen=True)

    kind: ProblemKind
    message: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


class ContractError(ValueError):
    """A program failed the contract check; ``kind`` is the most severe problem kind."""

    def __init__(self, problems: Iterable[ContractProblem], name: str = "<program>") -> None:
        self.problems: list[ContractProblem] = list(problems)
        if not self.problems:
            raise ValueError("ContractError needs at least one problem")
        self.name = name
        syntax = any(p.kind == "syntax_error" for p in self.problems)
        self.kind: ProblemKind = "syntax_error" if syntax else "contract_violation"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{name}: {self.kind.replace('_', ' ')}:\n{lines}")


class GeneratorProgram(BaseModel):
    """A loaded generator program: its source, display name and AST identity."""

    model_config = ConfigDict(frozen=True)

    source: str
    name: str
    ast_hash: str
    path: str | None = None
    checked: bool = True
    """False when loaded with ``check=False``; ``problems`` then lists what was found."""
    problems: tuple[ContractProblem, ...] = ()
    contract_version: str = CONTRACT_VERSION


# --------------------------------------------------------------------------- identity


_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop the docstring of the module and of every class and function, in place.

    Only statements can own a docstring, so only statement lists are walked (``body``,
    ``orelse``, ``finalbody``, except handlers and match cases), never expressions."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _DOCSTRING_OWNERS):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:]
        for field in _STATEMENT_LISTS:
            block = getattr(node, field, None)
            if isinstance(block, list):
                todo.extend(block)
    return tree


def _parse(source: str) -> ast.Module:
    return ast.parse(source, filename="<program>", mode="exec")


def ast_hash(source: str) -> str:
    """SHA-256 (hex) of the normalised AST of ``source``.

    Docstrings are removed and positions dropped, so comments, docstrings and formatting
    do not change the hash. Raises :class:`SyntaxError` if ``source`` does not parse.
    """
    return tree_hash(_parse(source))


def tree_hash(tree: ast.Module) -> str:
    """:func:`ast_hash` of a freshly parsed tree, which it strips of docstrings in place."""
    dumped = ast.dump(_strip_docstrings(tree), annotate_fields=True, include_attributes=False)
    return hashlib.sha256(dumped.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- contract


def _module_allowed(module: str) -> bool:
    root = module.split(".", 1)[0]
    if root not in ALLOWED_MODULES:
        return False
    return not any(module == f or module.startswith(f + ".") for f in FORBIDDEN_MODULES)


def _import_problem(module: str, node: ast.AST) -> ContractProblem:
    root = module.split(".", 1)[0]
    hint = _HINTS.get(root, "allowed: " + ", ".join(sorted(ALLOWED_MODULES - {"__future__"})))
    return ContractProblem(
        kind="contract_violation",
        message=f"import of '{module}' is not allowed ({hint})",
        line=getattr(node, "lineno", None),
        col=getattr(node, "col_offset", None),
    )


def _violation(message: str, node: ast.AST | None) -> ContractProblem:
    return ContractProblem(
        kind="contract_violation",
        message=message,
        line=getattr(node, "lineno", None),
        col=getattr(node, "col_offset", None),
    )


class _Checker(ast.NodeVisitor):
    """Collects import, name and attribute violations over the whole tree."""

    def __init__(self) -> None:
        self.problems: list[ContractProblem] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted module/object path

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _module_allowed(alias.name):
                self.problems.append(_import_problem(alias.name, node))
            elif alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".", 1)[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.problems.append(_violation("relative imports are not allowed", node))
            return
        module = node.module or ""
        if not _module_allowed(module):
            self.problems.append(_import_problem(module, node))
            return
        for alias in node.names:
            full = f"{module}.{alias.name}"
            if alias.name == "*":
                self.problems.append(_violation(f"'from {module} import *' is not allowed", node))
            elif _module_allowed(full) is False and full.split(".", 1)[0] in ALLOWED_MODULES:
                self.problems.append(_import_problem(full, node))
            else:
                self._check_numpy_random(full, node)
                self.aliases[alias.asname or alias.name] = full

    def visit_Name(self, node: ast.Name) -> None:
        dunder = _is_dunder(node.id) and node.id not in _ALLOWED_DUNDERS
        if node.id in FORBIDDEN_NAMES or dunder:
            self.problems.append(_violation(f"use of '{node.id}' is not allowed", node))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_dunder(node.attr) and node.attr not in _ALLOWED_DUNDERS:
            self.problems.append(_violation(f"access to '.{node.attr}' is not allowed", node))
        dotted = self._resolve(node)
        if dotted is not None:
            self._check_numpy_random(dotted, node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"getattr", "hasattr"} and len(node.args) > 1:
            name = node.args[1]
            text = name.value if isinstance(name, ast.Constant) else None
            if isinstance(text, str) and _is_dunder(text) and text not in _ALLOWED_DUNDERS:
                self.problems.append(_violation(f"{func.id}(..., '{text}') is not allowed", node))
        dotted = self._resolve(func) if isinstance(func, ast.Attribute | ast.Name) else None
        no_seed = not node.args and not node.keywords
        if dotted == "numpy.random.default_rng" and no_seed:
            msg = "numpy.random.default_rng() without a seed is not reproducible; use `rng`"
            self.problems.append(_violation(msg, node))
        self.generic_visit(node)

    def _resolve(self, node: ast.expr) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.aliases:
            return None
        return ".".join([self.aliases[node.id], *reversed(parts)])

    def _check_numpy_random(self, dotted: str, node: ast.AST) -> None:
        prefix = "numpy.random."
        if dotted.startswith(prefix):
            head = dotted[len(prefix) :].split(".", 1)[0]
            if head not in _NUMPY_RANDOM_OK:
                msg = (
                    f"'{dotted}' uses numpy's global random state; "
                    "draw from the `rng` argument instead"
                )
                if not any(
                    p.line == getattr(node, "lineno", None) and p.message == msg
                    for p in self.problems
                ):
                    self.problems.append(_violation(msg, node))


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _check_entry_point(tree: ast.Module) -> list[ContractProblem]:
    problems: list[ContractProblem] = []
    defs: list[ast.FunctionDef] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == ENTRY_POINT:
            defs.append(stmt)
        elif isinstance(stmt, ast.AsyncFunctionDef) and stmt.name == ENTRY_POINT:
            problems.append(_violation(f"'{ENTRY_POINT}' must not be async", stmt))
        elif isinstance(stmt, ast.ClassDef) and stmt.name == ENTRY_POINT:
            problems.append(_violation(f"'{ENTRY_POINT}' must be a function", stmt))
        elif ENTRY_POINT in _top_level_bindings(stmt):
            msg = f"'{ENTRY_POINT}' must be bound only by one top-level def statement"
            problems.append(_violation(msg, stmt))
    if not defs:
        if not problems:
            msg = f"no top-level function '{ENTRY_POINT}(space, n, rng, llm=None)'"
            problems.append(_violation(msg, None))
        return problems
    if len(defs) > 1:
        problems.append(_violation(f"'{ENTRY_POINT}' is defined more than once", defs[1]))
    fn = defs[-1]
    if fn.decorator_list:
        problems.append(_violation(f"'{ENTRY_POINT}' must not be decorated", fn))
    args = fn.args
    names = tuple(a.arg for a in args.posonlyargs + args.args)
    want = f"{ENTRY_POINT}(space, n, rng, llm=None)"
    if args.posonlyargs or names != EXPECTED_PARAMS or args.vararg or args.kwarg or args.kwonlyargs:
        got = ast.unparse(args)
        problems.append(_violation(f"signature must be {want}, got {ENTRY_POINT}({got})", fn))
    elif len(args.defaults) != 1 or not (
        isinstance(args.defaults[0], ast.Constant) and args.defaults[0].value is None
    ):
        got = ast.unparse(args)
        msg = f"only 'llm' may have a default and it must be None: {want}, got ({got})"
        problems.append(_violation(msg, fn))
    return problems


def _top_level_bindings(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module namespace (not in nested scopes)."""
    names: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".", 1)[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue  # a nested scope: its body binds nothing at module level
        elif isinstance(
            node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
        ):
            continue
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        todo.extend(ast.iter_child_nodes(node))
    return names


def check_contract(source: str) -> list[ContractProblem]:
    """Statically check ``source`` against the contract; nothing from it is executed.

    Returns the problems found (empty when the program is acceptable). A syntax error is
    reported alone, as there is no tree to check further.
    """
    return parse_and_check(source)[1]


def parse_and_check(source: str) -> tuple[ast.Module | None, list[ContractProblem]]:
    """:func:`check_contract`, also returning the parsed tree (None on a syntax error), so
    that a caller can hash it (:func:`tree_hash`) without parsing the source again."""
    try:
        tree = _parse(source)
        compile(tree, "<program>", "exec", dont_inherit=True)  # compile-time errors only
    except SyntaxError as exc:
        msg = f"{type(exc).__name__}: {exc.msg}"
        problem = ContractProblem(kind="syntax_error", message=msg, line=exc.lineno, col=exc.offset)
        return None, [problem]
    except (ValueError, RecursionError, MemoryError) as exc:
        msg = f"source cannot be parsed: {type(exc).__name__}: {exc}"
        return None, [ContractProblem(kind="syntax_error", message=msg)]
    checker = _Checker()
    checker.visit(tree)
    problems = _check_entry_point(tree) + checker.problems
    return tree, sorted(problems, key=lambda p: (p.line or 0, p.col or 0))


# --------------------------------------------------------------------------- loading


def _read_source(path_or_source: str | os.PathLike[str]) -> tuple[str, str | None]:
    if isinstance(path_or_source, os.PathLike):
        path = Path(path_or_source)
        return path.read_text(encoding="utf-8"), str(path)
    text = str(path_or_source)
    if "\n" not in text and text.endswith(".py") and Path(text).is_file():
        return Path(text).read_text(encoding="utf-8"), text
    return text, None


def load_program(
    path_or_source: str | os.PathLike[str], name: str | None = None, *, check: bool = True
) -> GeneratorProgram:
    """Load a generator program from a path or from source text, checking the contract.

    ``path_or_source`` is read as a path when it is a :class:`os.PathLike`, or a one-line
    string ending in ``.py`` that names an existing file; otherwise it is the source.
    Raises :class:`ContractError` (``kind`` ``syntax_error`` or ``contract_violation``)
    listing every problem with its line. With ``check=False`` only a syntax error is
    fatal; other problems are kept on the returned program and it is marked unchecked
    (used to exercise the sandbox with programs the static check would refuse).
    """
    source, path = _read_source(path_or_source)
    display = name or (Path(path).stem if path else None)
    tree, problems = parse_and_check(source)
    syntax = [p for p in problems if p.kind == "syntax_error"]
    if tree is None or syntax or (check and problems):
        raise ContractError(syntax or problems, name=display or "<program>")
    digest = tree_hash(tree)
    return GeneratorProgram(
        source=source,
        name=display or f"program-{digest[:12]}",
        ast_hash=digest,
        path=path,
        checked=check,
        problems=tuple(problems),
    )
