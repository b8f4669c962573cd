"""Variation operators on generator-program source, with no language model.

Mutations take one program's source and a :class:`numpy.random.Generator`; crossovers
take two. Each returns :class:`VariationResult` objects: ``ok`` children carry a source
that parses, passes :func:`personaevo.programs.check_contract` and differs (by AST hash)
from its parents; anything else is a reported failure (``syntax``, ``contract``,
``no-op``, ``no-site``, ...), never an exception, so the loop can count failures per
operator and drop them. All randomness comes from the generator passed in, so a seeded
run repeats exactly. Sources are produced with :func:`ast.unparse` (comments are lost).

::

    from personaevo.operators import mutate, crossover
    child = mutate(source, rng)                # one operator drawn by rate
    if child.ok:
        evaluate(child.source)
    left, right = crossover(a, b, rng)

The set is open: any object with a ``name`` and the :class:`Mutation` call signature
(an LLM-driven rewrite, say) can be put in the table passed to :func:`mutate`, and
:func:`make_child` does the parse/contract/no-op check for it. :class:`LLMMutation`
(:mod:`personaevo.operators.llm`) is that operator; the evolution loop batches its
requests per generation.
"""

from __future__ import annotations

import numpy as np

from personaevo.operators.base import (
    AstMutation,
    Crossover,
    FailureKind,
    Mutation,
    MutationContext,
    NoSiteError,
    VariationResult,
    make_child,
)
from personaevo.operators.crossover import BlockCrossover, HelperCrossover, module_deps
from personaevo.operators.llm import LLMMutation
from personaevo.operators.numeric import PerturbNumbers, perturb_value
from personaevo.operators.sampling import (
    SAMPLER_FAMILIES,
    SamplerFamily,
    SamplerForm,
    SwapSampler,
)
from personaevo.operators.statements import (
    STATEMENT_LIBRARY,
    DeleteStatement,
    DuplicateStatement,
    InsertStatement,
    LibraryStatement,
)

__all__ = [
    "CROSSOVERS",
    "DEFAULT_CROSSOVERS",
    "DEFAULT_MUTATIONS",
    "MUTATIONS",
    "SAMPLER_FAMILIES",
    "STATEMENT_LIBRARY",
    "AstMutation",
    "BlockCrossover",
    "Crossover",
    "DeleteStatement",
    "DuplicateStatement",
    "FailureKind",
    "HelperCrossover",
    "InsertStatement",
    "LLMMutation",
    "LibraryStatement",
    "Mutation",
    "MutationContext",
    "NoSiteError",
    "PerturbNumbers",
    "SamplerFamily",
    "SamplerForm",
    "SwapSampler",
    "VariationResult",
    "crossover",
    "make_child",
    "module_deps",
    "mutate",
    "perturb_value",
]

MUTATIONS: dict[str, Mutation] = {
    op.name: op
    for op in (
        PerturbNumbers(),
        SwapSampler(),
        InsertStatement(),
        DeleteStatement(),
        DuplicateStatement(),
    )
}
"""The built-in mutations by name."""

CROSSOVERS: dict[str, Crossover] = {op.name: op for op in (HelperCrossover(), BlockCrossover())}
"""The built-in crossovers by name."""

DEFAULT_MUTATIONS: list[tuple[Mutation, float]] = [
    (MUTATIONS["perturb_numbers"], 0.30),
    (MUTATIONS["swap_sampler"], 0.25),
    (MUTATIONS["insert_statement"], 0.20),
    (MUTATIONS["delete_statement"], 0.10),
    (MUTATIONS["duplicate_statement"], 0.15),
]
"""Each mutation with its rate (relative; they need not sum to 1)."""

DEFAULT_CROSSOVERS: list[tuple[Crossover, float]] = [
    (CROSSOVERS["crossover_helpers"], 0.5),
    (CROSSOVERS["crossover_blocks"], 0.5),
]
"""Each crossover with its rate (relative)."""


def _draw(rng: np.random.Generator, rates: list[float]) -> int:
    w = np.asarray(rates, dtype=float)
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"operator rates must be finite, >= 0 and not all 0: {rates}")
    return int(rng.choice(w.size, p=w / w.sum()))


def mutate(
    source: str,
    rng: np.random.Generator,
    operators: list[tuple[Mutation, float]] | None = None,
    context: MutationContext | None = None,
    *,
    retry_no_site: bool = True,
) -> VariationResult:
    """Apply one mutation drawn by rate from ``operators`` (default
    :data:`DEFAULT_MUTATIONS`).

    With ``retry_no_site`` an operator that finds nothing to change (``no-site``) is set
    aside and another is drawn from the rest, so a program without, say, sampling calls
    still gets mutated; the last result is returned either way. Raises ``ValueError``
    for bad rates only.
    """
    table = list(DEFAULT_MUTATIONS if operators is None else operators)
    result: VariationResult | None = None
    while table:
        op, _ = table.pop(_draw(rng, [r for _, r in table]))
        result = op(source, rng, context)
        if result.failure != "no-site" or not retry_no_site:
            return result
        table = [(o, r) for o, r in table if r > 0]
    assert result is not None
    return result


def crossover(
    a: str,
    b: str,
    rng: np.random.Generator,
    operators: list[tuple[Crossover, float]] | None = None,
) -> tuple[VariationResult, VariationResult]:
    """Apply one crossover drawn by rate from ``operators`` (default
    :data:`DEFAULT_CROSSOVERS`): the first child is ``a`` with material from ``b``, the
    second ``b`` with material from ``a``."""
    table = DEFAULT_CROSSOVERS if operators is None else operators
    op, _ = table[_draw(rng, [r for _, r in table])]
    return op(a, b, rng)
