"""Helpers for generator programs: the one module of personaevo that programs may import.

Programs receive the trait space as ``space`` (axes with ``.name``, ``.kind``,
``.low``/``.high`` for continuous axes and ``.values`` for the others, and
``space.is_feasible(traits)``). These functions do the mapping most seed generators
write by hand: from points of the unit cube to trait values, and from those to personas.

>>> from personaevo.generator_kit import feasible_personas
>>> def generate(space, n, rng, llm=None):
...     return feasible_personas(space, rng.random((4 * n, len(space.axes))), n, "uniform")

Everything here is pure: no files, clocks, randomness or processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["feasible_personas", "persona", "traits_at", "value_at"]


def value_at(axis: Any, u: float) -> Any:
    """The value of ``axis`` at coordinate ``u`` in [0, 1): linear on a continuous axis
    (``low`` + u (``high`` - ``low``)), equal slices of ``values`` on a discrete one."""
    u = min(max(float(u), 0.0), 1.0)
    if axis.kind == "continuous":
        return float(axis.low + u * (axis.high - axis.low))
    values = list(axis.values)
    return values[min(int(u * len(values)), len(values) - 1)]


def traits_at(space: Any, point: Sequence[float]) -> dict[str, Any]:
    """The traits at a point of the unit cube, one coordinate per axis in axis order."""
    axes = list(space.axes)
    if len(point) != len(axes):
        raise ValueError(f"a point needs {len(axes)} coordinates, got {len(point)}")
    return {axis.name: value_at(axis, u) for axis, u in zip(axes, point, strict=True)}


def persona(
    persona_id: str | int,
    traits: dict[str, Any],
    description: str | None = None,
    profile: Any = None,
) -> dict[str, Any]:
    """A persona dict as the contract asks (``description``/``profile`` only when given)."""
    record: dict[str, Any] = {"id": persona_id, "traits": dict(traits)}
    if description is not None:
        record["description"] = description
    if profile is not None:
        record["profile"] = profile
    return record


def feasible_personas(
    space: Any, points: Iterable[Sequence[float]], n: int, prefix: str = "p"
) -> list[dict[str, Any]]:
    """Personas at the first ``n`` feasible ``points`` (unit-cube points, in order), with
    ids ``f"{prefix}-{i}"``; fewer when the points run out first."""
    personas: list[dict[str, Any]] = []
    for point in points:
        if len(personas) >= n:
            break
        traits = traits_at(space, point)
        if space.is_feasible(traits):
            personas.append(persona(f"{prefix}-{len(personas)}", traits))
    return personas
