"""Scale-aware perturbation of numeric literals."""

from __future__ import annotations

import ast
import math

import numpy as np

from personaevo.operators.analysis import Parsed
from personaevo.operators.base import CachedAstMutation, MutationContext, NoSiteError

_IDENTITY_VALUES = (0, 1)
"""0 and 1 (and 0.0, 1.0) are left alone: they are starts, bounds, identities and
indices far more often than tunable parameters."""


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_index(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Whether a literal is (part of) a subscript's index, as in ``x[0]``, ``x[-2]``,
    ``x[:3]``."""
    child, parent = node, parents.get(id(node))
    while isinstance(parent, ast.UnaryOp | ast.Slice | ast.Tuple):
        child, parent = parent, parents.get(id(parent))
    return isinstance(parent, ast.Subscript) and parent.slice is child


def numeric_sites(tree: ast.AST) -> list[tuple[ast.Constant, bool]]:
    """Literals worth perturbing, each with whether it is an exponent (``2**20``)."""
    parents = _parents(tree)
    in_fstring = {
        id(n) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr) for n in ast.walk(j)
    }
    sites: list[tuple[ast.Constant, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
            continue
        if not isinstance(node.value, int | float) or node.value in _IDENTITY_VALUES:
            continue
        if isinstance(node.value, float) and not math.isfinite(node.value):
            continue
        if id(node) in in_fstring or _is_index(node, parents):
            continue
        parent = parents.get(id(node))
        exponent = isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Pow)
        sites.append((node, exponent and parent.right is node))
    return sites


def _round(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def perturb_value(
    value: int | float,
    rng: np.random.Generator,
    *,
    exponent: bool = False,
    sigma: float = 0.35,
) -> int | float:
    """A new value near ``value``, never equal to it.

    * ints: ``±1 .. ±k`` with ``k`` a quarter of the magnitude (at least 1; exponents move
      by exactly 1), never below 2 (``2 ** 20`` must not become ``1 ** 20``, nor
      ``batch *= 2`` a no-op);
    * floats in (0, 1) are taken as probabilities/fractions: moved on the logit scale and
      kept inside (0, 1);
    * other floats: multiplied by a log-normal factor (sign kept), 3 significant digits.
    """
    if isinstance(value, int):
        k = 1 if exponent else max(1, round(0.25 * abs(value)))
        for _ in range(20):
            step = int(rng.integers(1, k + 1)) * (1 if rng.random() < 0.5 else -1)
            new = value + step
            if value >= 2:
                new = max(new, 2)  # 0 and 1 are degenerate as factors, bases, counts
            if new != value:
                return new
        return value + 1
    for _ in range(20):
        if 0.0 < value < 1.0:
            logit = math.log(value / (1.0 - value)) + float(rng.normal(0.0, 2 * sigma))
            new = min(max(_round(1.0 / (1.0 + math.exp(-logit))), 0.001), 0.999)
        else:
            new = _round(value * math.exp(float(rng.normal(0.0, sigma))))
        if new != value and math.isfinite(new):
            return new
    return _round(value * 1.1) if value else 0.1


class PerturbNumbers(CachedAstMutation):
    """Perturb one to three numeric literals (see :func:`perturb_value`). Literals that are
    subscript indices, inside f-strings, or equal to 0 or 1 are left alone."""

    def __init__(self, name: str = "perturb_numbers", sigma: float = 0.35) -> None:
        self.name = name
        self.sigma = sigma

    def edit_parsed(
        self, parsed: Parsed, rng: np.random.Generator, context: MutationContext | None
    ) -> str:
        sites = parsed.located("numeric_sites", lambda p: numeric_sites(p.tree))
        if not sites:
            raise NoSiteError("no numeric literal to perturb")
        count = min(len(sites), int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])))
        chosen = sorted(int(i) for i in rng.choice(len(sites), size=count, replace=False))
        changes = []
        for i in chosen:
            node, exponent = sites[i]
            old = node.value
            node.value = perturb_value(old, rng, exponent=exponent, sigma=self.sigma)
            changes.append(f"line {node.lineno}: {old!r} -> {node.value!r}")
        return "; ".join(changes)
