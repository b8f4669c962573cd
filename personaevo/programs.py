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

A program may import only the modules in :data:`ALLOWED_MODULES`, each by its full name,
and take from them only the names each gives to programs
(:mod:`personaevo.program_imports`: public names minus file access, clocks, OS randomness
and interpreter introspection). ``random``, ``os``, ``sys``, ``subprocess``, ``socket``,
``time`` and everything else is refused, also when reached through an allowed module
(``from typing import sys``). Of personaevo, programs get :mod:`personaevo.generator_kit`.
The static check here is early, readable feedback
for program authors (people or mutation operators) -- it is *not* the security boundary;
:mod:`personaevo.sandbox` is, and it holds for programs that bypass this check.

A program's identity is :func:`ast_hash`: the SHA-256 of its normalised AST, so comments,
docstrings and formatting do not change it (stable within one Python minor version).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from personaevo.program_imports import (
    PROGRAM_MODULES,
    UNSEEDED_RANDOM_CONSTRUCTORS,
    is_program_module,
    refusal,
)

__all__ = [
    "ALLOWED_MODULES",
    "CONTRACT_VERSION",
    "ENTRY_POINT",
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

ALLOWED_MODULES: frozenset[str] = frozenset(PROGRAM_MODULES)
"""Every module a program may import, by its full dotted name (submodules are not implied:
``scipy.io`` is refused although ``scipy`` is allowed). Which names each gives is
:data:`personaevo.program_imports.PROGRAM_MODULES`."""

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
_HINTS = {
    "random": "use the `rng` argument (a numpy.random.Generator) for randomness",
    "time": "programs must be deterministic given `rng`",
    "uuid": "derive ids from a counter or from `rng`",
}

ProblemKind = Literal["syntax_error", "contract_violation", "unreadable"]


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
        kinds = {p.kind for p in self.problems}
        self.kind: ProblemKind = next(
            k for k in ("unreadable", "syntax_error", "contract_violation") if k in kinds
        )
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


_ATTRIBUTE_BUILTINS = frozenset({"getattr", "hasattr"})
_DUNDER_IN_TEXT = re.compile(r"__[A-Za-z0-9]\w*?__")


class _Checker(ast.NodeVisitor):
    """Collects import, name and attribute violations over the whole tree.

    Local names bound by imports are followed through attribute chains: every step taken
    from a listed module must be a name that module gives to programs
    (:func:`personaevo.program_imports.refusal`)."""

    def __init__(self) -> None:
        self.problems: list[ContractProblem] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted module/object path
        self._called: set[int] = set()  # ids of Name nodes that are a call's function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not is_program_module(alias.name):
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
        if not is_program_module(module):
            self.problems.append(_import_problem(module, node))
            return
        for alias in node.names:
            if alias.name == "*":
                self.problems.append(_violation(f"'from {module} import *' is not allowed", node))
                continue
            reason = refusal(module, alias.name)
            if reason is not None:
                message = f"import of '{module}.{alias.name}': {reason}"
                self.problems.append(_violation(message, node))
            else:
                self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def visit_Name(self, node: ast.Name) -> None:
        dunder = _is_dunder(node.id) and node.id not in _ALLOWED_DUNDERS
        if node.id in FORBIDDEN_NAMES or dunder:
            self.problems.append(_violation(f"use of '{node.id}' is not allowed", node))
        elif node.id in _ATTRIBUTE_BUILTINS and id(node) not in self._called:
            msg = f"'{node.id}' may only be called directly, with the attribute name written out"
            self.problems.append(_violation(msg, node))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_dunder(node.attr) and node.attr not in _ALLOWED_DUNDERS:
            self.problems.append(_violation(f"access to '.{node.attr}' is not allowed", node))
        else:
            self._check_step(self._module_path(node.value), node.attr, node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for found in _DUNDER_IN_TEXT.findall(node.value):
                if found not in _ALLOWED_DUNDERS:
                    msg = f"a string naming '{found}' is not allowed (attribute access by name)"
                    self.problems.append(_violation(msg, node))
                    break

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _ATTRIBUTE_BUILTINS:
            self._called.add(id(func))
            self._check_attribute_call(func.id, node)
        dotted = self._dotted(func)
        if dotted in UNSEEDED_RANDOM_CONSTRUCTORS and _without_seed(node):
            short = dotted.rsplit(".", 1)[1]
            msg = f"{dotted}() without a seed draws OS entropy, not reproducible; use `rng`"
            if short == "default_rng":
                msg = "numpy.random.default_rng() without a seed is not reproducible; use `rng`"
            self.problems.append(_violation(msg, node))
        self.generic_visit(node)

    def _check_attribute_call(self, builtin: str, node: ast.Call) -> None:
        if len(node.args) < 2 or any(isinstance(a, ast.Starred) for a in node.args):
            if node.args or node.keywords:
                msg = f"{builtin}() needs its object and attribute name as plain arguments"
                self.problems.append(_violation(msg, node))
            return
        name = node.args[1]
        text = name.value if isinstance(name, ast.Constant) else None
        if not isinstance(text, str):
            msg = f"{builtin}() with a computed attribute name is not allowed; write the name out"
            self.problems.append(_violation(msg, node))
        elif _is_dunder(text) and text not in _ALLOWED_DUNDERS:
            self.problems.append(_violation(f"{builtin}(..., '{text}') is not allowed", node))
        else:
            self._check_step(self._module_path(node.args[0]), text, node)

    def _check_step(self, module: str | None, name: str, node: ast.AST) -> None:
        """A program takes ``name`` from ``module`` (a listed module, or None: not one)."""
        if module is None:
            return
        reason = refusal(module, name)
        if reason is None:
            return
        line = getattr(node, "lineno", None)
        if not any(p.line == line and p.message == reason for p in self.problems):
            self.problems.append(_violation(reason, node))

    def _module_path(self, node: ast.expr) -> str | None:
        """The dotted name of the listed module ``node`` denotes, or None."""
        if isinstance(node, ast.Name):
            path = self.aliases.get(node.id)
        elif isinstance(node, ast.Attribute):
            base = self._module_path(node.value)
            path = f"{base}.{node.attr}" if base is not None else None
        else:
            return None
        return path if path is not None and is_program_module(path) else None

    def _dotted(self, node: ast.expr) -> str | None:
        """The dotted path of a name bound by an import or reached from a listed module."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._module_path(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None


def _without_seed(call: ast.Call) -> bool:
    """True when a random constructor is called with no seed or an explicit None."""
    if not call.args and not call.keywords:
        return True
    first = call.args[0] if call.args else None
    if first is None:
        first = next((k.value for k in call.keywords if k.arg in {"seed", "entropy"}), None)
    return isinstance(first, ast.Constant) and first.value is None


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
    """(source, path or None); raises :class:`ContractError` of kind ``unreadable`` when
    a path cannot be read or is not UTF-8 text."""
    if isinstance(path_or_source, os.PathLike):
        path = str(path_or_source)
    else:
        text = str(path_or_source)
        if not ("\n" not in text and text.endswith(".py") and Path(text).is_file()):
            return text, None
        path = text
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start}: {exc.reason})"
    except OSError as exc:
        message = f"cannot be read: {exc.strerror or exc}"
    problem = ContractProblem(kind="unreadable", message=message)
    raise ContractError([problem], name=Path(path).stem)


def load_program(
    path_or_source: str | os.PathLike[str], name: str | None = None, *, check: bool = True
) -> GeneratorProgram:
    """Load a generator program from a path or from source text, checking the contract.

    ``path_or_source`` is read as a path when it is a :class:`os.PathLike`, or a one-line
    string ending in ``.py`` that names an existing file; otherwise it is the source.
    Raises :class:`ContractError` (``kind`` ``unreadable``: the file cannot be read or is
    not UTF-8; ``syntax_error``; ``contract_violation``) listing every problem with its
    line: whatever keeps a program from loading is a ContractError. With ``check=False``
    only an unreadable file or a syntax error is fatal; other problems are kept on the
    returned program and it is marked unchecked (used to exercise the sandbox with
    programs the static check would refuse).
    """
    source, path = _read_source(path_or_source)
    display = name or (Path(path).stem if path else None)
    tree, problems = parse_and_check(source)
    syntax = [p for p in problems if p.kind == "syntax_error"]  # unreadable raised before
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
