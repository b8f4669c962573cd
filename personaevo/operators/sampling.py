"""Swapping a sampling call for another member of its declared family.

A :class:`SamplerFamily` is data: a few *forms*, each an expression template over
placeholders. UPPERCASE names declared by the family are placeholders; every other name
(``min``, ``int``, ``range``, ``_i``) is literal. ``R`` stands for the random generator
(it must match a plain name), ``**KW`` for any further keyword arguments, ``shared``
placeholders carry over from the matched form to the new one (the range ``A``, ``B``),
``fresh`` ones get a newly drawn constant, and ``wild`` ones only serve to recognise a
form. A form's template is also a pattern; ``also`` lists more patterns recognised as that
form (tried after every template of the family). Add a family by appending to
:data:`SAMPLER_FAMILIES` (or pass your own list).
"""

from __future__ import annotations

import ast
import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personaevo.operators.base import AstMutation, MutationContext, NoSiteError

RNG = "R"
KWARGS = "KW"

Draw = Callable[[np.random.Generator], float]


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def draw_shape(rng: np.random.Generator) -> float:
    """A beta shape parameter in [0.2, 5]: below 1 pushes mass to the ends."""
    return min(max(_sig(math.exp(float(rng.normal(0.0, 0.8))), 2), 0.2), 5.0)


def draw_fraction(rng: np.random.Generator) -> float:
    """A fraction in [0.05, 0.95] (a triangular mode, a clipped normal's centre)."""
    return _sig(float(rng.uniform(0.05, 0.95)), 2)


def draw_spread(rng: np.random.Generator) -> float:
    """A standard deviation as a share of the range, in [0.1, 0.5]."""
    return _sig(float(rng.uniform(0.1, 0.5)), 2)


def draw_ratio(rng: np.random.Generator) -> float:
    """A geometric weight ratio in [0.3, 0.95]: level ``i`` weighs ``q ** i`` (the
    template normalises by the actual sum and names ``q`` once, so perturbing it keeps
    the probabilities valid)."""
    return min(max(_sig(math.exp(-abs(float(rng.normal(0.0, 0.4))) - 0.05), 2), 0.3), 0.95)


def draw_df(rng: np.random.Generator) -> float:
    """Degrees of freedom of a heavy-tailed Student t, in [1.5, 10]."""
    return _sig(float(rng.uniform(1.5, 10.0)), 2)


@dataclass(frozen=True)
class SamplerForm:
    """One way of drawing from a family: a template, and extra patterns to recognise."""

    name: str
    template: str
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplerFamily:
    """Interchangeable ways of drawing the same kind of value."""

    name: str
    forms: tuple[SamplerForm, ...]
    shared: tuple[str, ...] = ()
    fresh: Mapping[str, Draw] = field(default_factory=dict)
    wild: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for form in self.forms:
            for text in (form.template, *form.also):
                tree = ast.parse(text, mode="eval")  # raises on a typo in the table
                names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
                missing = set(self.shared) - names
                if missing:
                    raise ValueError(f"{self.name}.{form.name}: {text!r} lacks {missing}")
                unknown = {n for n in names if n.isupper()} - self.placeholders
                if unknown:
                    raise ValueError(f"{self.name}.{form.name}: undeclared {unknown}")

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset({RNG, KWARGS, *self.shared, *self.fresh, *self.wild})


_SHAPE_MID_SPREAD: dict[str, Draw] = {
    "ALPHA": draw_shape,
    "BETA": draw_shape,
    "MID": draw_fraction,
    "SPREAD": draw_spread,
}

SAMPLER_FAMILIES: list[SamplerFamily] = [
    SamplerFamily(
        name="range",
        shared=("A", "B"),
        forms=(
            SamplerForm(
                "uniform",
                "R.uniform(A, B)",
                also=("A + (B - A) * R.random()", "A + R.random() * (B - A)"),
            ),
            SamplerForm(
                "beta",
                "A + (B - A) * R.beta(ALPHA, BETA)",
                also=("A + R.beta(ALPHA, BETA) * (B - A)",),
            ),
            SamplerForm(
                "clipped_normal",
                "min(max(R.normal(A + (B - A) * MID, (B - A) * SPREAD), A), B)",
                also=("min(max(R.normal(MEAN, SD), A), B)", "NP.clip(R.normal(MEAN, SD), A, B)"),
            ),
            SamplerForm(
                "triangular",
                "R.triangular(A, A + (B - A) * MID, B)",
                also=("R.triangular(A, MODE, B)",),
            ),
        ),
        fresh=_SHAPE_MID_SPREAD,
        wild=("MEAN", "SD", "NP", "MODE"),
    ),
    SamplerFamily(
        name="index",
        shared=("K",),
        forms=(
            SamplerForm("integers", "R.integers(0, K)", also=("R.integers(K)",)),
            SamplerForm(
                "geometric_low",
                "R.choice(K, p=[_w / _t for _ws in [[Q ** _i for _i in range(K)]]"
                " for _t in [sum(_ws)] for _w in _ws])",
                also=("R.choice(K, p=P)",),
            ),
            SamplerForm(
                "geometric_high",
                "R.choice(K, p=[_w / _t for _ws in [[Q ** (K - 1 - _i) for _i in range(K)]]"
                " for _t in [sum(_ws)] for _w in _ws])",
            ),
            SamplerForm("beta_index", "min(int(K * R.beta(ALPHA, BETA)), K - 1)"),
        ),
        fresh={"Q": draw_ratio, "ALPHA": draw_shape, "BETA": draw_shape},
        wild=("P",),
    ),
    SamplerFamily(
        name="unit",
        forms=(
            SamplerForm("random", "R.random()"),
            SamplerForm("beta", "R.beta(ALPHA, BETA)"),
            SamplerForm("triangular", "R.triangular(0.0, MID, 1.0)"),
            SamplerForm("clipped_normal", "min(max(R.normal(MID, SPREAD), 0.0), 1.0)"),
        ),
        fresh=_SHAPE_MID_SPREAD,
    ),
    SamplerFamily(
        name="noise",
        shared=("M", "S"),
        forms=(
            SamplerForm("normal", "R.normal(M, S, **KW)"),
            SamplerForm("laplace", "R.laplace(M, S, **KW)"),
            SamplerForm("logistic", "R.logistic(M, S, **KW)"),
            SamplerForm("student_t", "M + S * R.standard_t(DF, **KW)"),
        ),
        fresh={"DF": draw_df},
    ),
]
"""The declared families; the first pattern that matches a node names its form."""


# --------------------------------------------------------------------------- matching

Env = dict[str, Any]


def _same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a) == ast.dump(b)


def unify(pattern: ast.AST, node: ast.AST, env: Env, holes: frozenset[str]) -> bool:
    """Match ``node`` against ``pattern``, binding placeholders in ``env``."""
    if isinstance(pattern, ast.Name) and pattern.id in holes:
        if not isinstance(node, ast.expr) or (pattern.id == RNG and not isinstance(node, ast.Name)):
            return False
        if pattern.id in env:
            return _same(env[pattern.id], node)
        env[pattern.id] = node
        return True
    if type(pattern) is not type(node):
        return False
    if isinstance(pattern, ast.Call):
        assert isinstance(node, ast.Call)
        if not unify(pattern.func, node.func, env, holes) or len(pattern.args) != len(node.args):
            return False
        if not all(unify(p, n, env, holes) for p, n in zip(pattern.args, node.args, strict=True)):
            return False
        return _unify_keywords(pattern.keywords, node.keywords, env, holes)
    for name in pattern._fields:
        a, b = getattr(pattern, name, None), getattr(node, name, None)
        if isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                return False
            for x, y in zip(a, b, strict=True):
                if isinstance(x, ast.AST):
                    if not unify(x, y, env, holes):
                        return False
                elif x != y:
                    return False
        elif isinstance(a, ast.AST):
            if not isinstance(b, ast.AST) or not unify(a, b, env, holes):
                return False
        elif a != b or type(a) is not type(b):
            return False
    return True


def _unify_keywords(
    pattern: list[ast.keyword], node: list[ast.keyword], env: Env, holes: frozenset[str]
) -> bool:
    rest = any(
        k.arg is None and isinstance(k.value, ast.Name) and k.value.id == KWARGS for k in pattern
    )
    given = {k.arg: k for k in node if k.arg is not None}
    used: set[str] = set()
    for k in pattern:
        if k.arg is None:
            continue
        if k.arg not in given or not unify(k.value, given[k.arg].value, env, holes):
            return False
        used.add(k.arg)
    leftover = [k for k in node if k.arg not in used]
    if rest:
        env[KWARGS] = leftover
        return True
    return not leftover


@dataclass
class SamplerSite:
    """A sampling expression found in a program, with what it matched."""

    node: ast.expr
    family: SamplerFamily
    form: int
    env: Env
    pattern: ast.expr


def _parse_expr(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


def find_sampler_sites(tree: ast.AST, families: list[SamplerFamily]) -> list[SamplerSite]:
    """Every (node, family) pair where a node matches one of the family's forms."""
    compiled = [
        (fam, i, _parse_expr(text))
        for fam in families
        for stage in (0, 1)  # every form's own template before any extra pattern
        for i, form in enumerate(fam.forms)
        for text in ((form.template,) if stage == 0 else form.also)
    ]
    sites: list[SamplerSite] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call | ast.BinOp):
            continue
        seen: set[str] = set()
        for fam, i, pattern in compiled:
            if fam.name in seen:
                continue
            env: Env = {}
            if unify(pattern, node, env, fam.placeholders):
                sites.append(SamplerSite(node, fam, i, env, pattern))
                seen.add(fam.name)
    return sites


# --------------------------------------------------------------------------- building


def _count(tree: ast.AST, name: str) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name)


def _reads(expr: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(expr))


class _Fill(ast.NodeTransformer):
    def __init__(self, env: Env) -> None:
        self.env = env

    def visit_Call(self, node: ast.Call) -> ast.AST:
        keywords: list[ast.keyword] = []
        for k in node.keywords:
            if k.arg is None and isinstance(k.value, ast.Name) and k.value.id == KWARGS:
                keywords.extend(copy.deepcopy(self.env.get(KWARGS, [])))
            else:
                keywords.append(k)
        node.keywords = keywords
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.env and node.id != KWARGS:
            return copy.deepcopy(self.env[node.id])
        return node


def build_form(site: SamplerSite, target: int, rng: np.random.Generator) -> ast.expr | None:
    """The expression for form ``target`` of the site's family, or None when it would
    evaluate a random draw more often than the original (a shared argument that calls
    the generator may not be duplicated)."""
    fam = site.family
    template = _parse_expr(fam.forms[target].template)
    rng_name = site.env[RNG].id
    for name in fam.shared:
        if _count(template, name) > _count(site.pattern, name) and _reads(site.env[name], rng_name):
            return None
    env = {k: v for k, v in site.env.items() if k in fam.shared or k in (RNG, KWARGS)}
    for name, draw in fam.fresh.items():
        if _count(template, name):
            env[name] = ast.Constant(value=draw(rng))
    return _Fill(env).visit(template)


class _Replace(ast.NodeTransformer):
    def __init__(self, old: ast.AST, new: ast.AST) -> None:
        self.old, self.new = old, new

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.old:
            return self.new
        return super().visit(node)


def replace_node(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """Replace the node ``old`` (by identity) with ``new`` inside ``tree``."""
    _Replace(old, new).visit(tree)


class SwapSampler(AstMutation):
    """Replace one sampling expression with another form of its family, e.g.
    ``rng.uniform(a, b)`` -> ``a + (b - a) * rng.beta(0.6, 1.8)``, or
    ``rng.integers(0, k)`` -> a geometric-weighted ``rng.choice(k, p=...)``."""

    def __init__(
        self, name: str = "swap_sampler", families: list[SamplerFamily] | None = None
    ) -> None:
        self.name = name
        self.families = SAMPLER_FAMILIES if families is None else families

    def edit(
        self, tree: ast.Module, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        sites = find_sampler_sites(tree, self.families)
        if not sites:
            raise NoSiteError("no sampling call of a declared family")
        order = rng.permutation(len(sites))
        for s in order:
            site = sites[int(s)]
            targets = [i for i in range(len(site.family.forms)) if i != site.form]
            for t in rng.permutation(len(targets)):
                target = targets[int(t)]
                new = build_form(site, target, rng)
                if new is None:
                    continue
                line = getattr(site.node, "lineno", "?")
                replace_node(tree, site.node, new)
                forms = site.family.forms
                swap = f"{forms[site.form].name} -> {forms[target].name}"
                return f"line {line}: {site.family.name} {swap}"
        raise NoSiteError("no sampling call can be swapped without duplicating a draw")
