"""Trait spaces: the axes a persona population varies along, what combinations are
feasible, and which regions safety testers care about.

A :class:`TraitSpace` is loaded from YAML or JSON (:func:`load_space`) or built in
Python. It has

* ``axes``: continuous (``low``/``high`` bounds), ordinal (ordered ``levels``) or
  categorical (unordered ``choices``), each with a description and low/high anchor
  texts for prompts, an optional ``bins`` count for the cell grid and an optional
  declared ``marginal`` distribution (used as a synthetic reference population).
  Ordered axes may list Likert ``items`` (some ``reverse``-keyed) and categorical axes
  ``value_anchors`` (a text per choice): what the assessors of free-text personas
  measure against (:mod:`personaevo.assess`);
* ``constraints``: feasibility rules in a small declarative form, never ``eval``::

      - name: minors_do_not_work
        when: {age: {lt: 16}}
        then: {employment: {in: [student, none]}}
      - forbid: {distress: {eq: minimal}, ideation: {eq: active_with_plan}}

  ``when``/``then`` means "if every ``when`` condition holds, every ``then`` condition
  must hold"; ``forbid`` means "these conditions may not all hold together";
* ``consequential``: named regions (conjunctions of axis conditions) such as
  "over 75, low tech literacy, high distress", counted separately by the metrics.

A condition is a mapping of operators to operands, all of which must hold:
``lt le gt ge`` (continuous: numbers; ordinal: levels, compared by rank),
``eq ne in not_in`` (ordinal and categorical: levels or choices).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from personaevo.errors import FileFieldError, FileFieldsError, InputError, not_a_file

Level = str | int

_COMPARISONS = ("lt", "le", "gt", "ge")
_MEMBERSHIP = ("eq", "ne", "in", "not_in")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Condition(_Strict):
    """A predicate on one axis; every operator given must hold."""

    lt: float | Level | None = None
    le: float | Level | None = None
    gt: float | Level | None = None
    ge: float | Level | None = None
    eq: Level | None = None
    ne: Level | None = None
    in_: list[Level] | None = Field(default=None, alias="in")
    not_in: list[Level] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.operators():
            raise ValueError("a condition needs at least one of lt, le, gt, ge, eq, ne, in, not_in")
        return self

    def operators(self) -> dict[str, Any]:
        """The operators that are set, keyed by their file name (``in`` not ``in_``)."""
        raw = self.model_dump(by_alias=True, exclude_none=True)
        return {op: raw[op] for op in (*_COMPARISONS, *_MEMBERSHIP) if op in raw}


class ContinuousMarginal(_Strict):
    """A declared marginal for a continuous axis: ``uniform`` over the bounds, ``normal``
    (``mean``, ``sd`` in axis units, truncated to the bounds) or ``beta`` (``a``, ``b``,
    on the bounds rescaled to [0, 1])."""

    dist: Literal["uniform", "normal", "beta"]
    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)
    a: float | None = Field(default=None, gt=0)
    b: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _params(self) -> ContinuousMarginal:
        needed = {"uniform": (), "normal": ("mean", "sd"), "beta": ("a", "b")}[self.dist]
        missing = [p for p in needed if getattr(self, p) is None]
        if missing:
            raise ValueError(f"a {self.dist} marginal needs {', '.join(missing)}")
        return self


class DiscreteMarginal(_Strict):
    """Declared relative weights per level or choice; unlisted ones weigh 0."""

    weights: dict[str, float]


class LikertItem(_Strict):
    """A statement a persona rates from 1 (strongly disagree) to 5 (strongly agree); the
    questionnaire assessor (:mod:`personaevo.assess.questionnaire`) averages an axis's
    items. ``reverse``: agreeing means a *low* position, so the answer ``x`` scores
    ``6 - x``. In a file an item is ``{text: ..., reverse: true}`` or just its text."""

    text: str = Field(min_length=1)
    reverse: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data


class _AxisBase(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    low_anchor: str = ""
    high_anchor: str = ""
    items: list[LikertItem] = Field(
        default=[], description="Likert items for questionnaire assessment (ordered axes)."
    )


class ContinuousAxis(_AxisBase):
    """A real-valued trait in ``[low, high]``; encoded as ``(x - low) / (high - low)``."""

    kind: Literal["continuous"] = "continuous"
    low: float
    high: float
    bins: int = Field(default=5, ge=1, le=1000)
    marginal: ContinuousMarginal | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ContinuousAxis:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"low ({self.low}) must be finite and below high ({self.high})")
        return self

    @property
    def n_bins(self) -> int:
        return self.bins


class _DiscreteAxis(_AxisBase):
    marginal: DiscreteMarginal | None = None

    @property
    def values(self) -> list[Level]:
        raise NotImplementedError

    @property
    def n_bins(self) -> int:
        return len(self.values)

    def index(self, value: Any) -> int | None:
        """Position of ``value`` among the levels/choices, or None when it is not one.
        Types must match too: 3 and "3" are different levels, True is not 1."""
        try:
            i = self._lookup.get(value)
        except TypeError:  # unhashable
            return None
        if i is None or type(value) is not type(self.values[i]):
            return None
        return i

    @functools.cached_property
    def _lookup(self) -> dict[Any, int]:
        return {v: i for i, v in enumerate(self.values)}

    @model_validator(mode="after")
    def _distinct(self) -> _DiscreteAxis:
        values = self.values
        if len(values) < 2:
            raise ValueError("needs at least two values")
        if len({(type(v).__name__, str(v)) for v in values}) != len(values):
            raise ValueError("values must be distinct")
        if self.marginal is not None:
            names = {str(v) for v in values}
            unknown = sorted(set(self.marginal.weights) - names)
            if unknown:
                raise ValueError(f"marginal weights name unknown values {unknown}")
            if any(w < 0 for w in self.marginal.weights.values()) or not any(
                w > 0 for w in self.marginal.weights.values()
            ):
                raise ValueError("marginal weights must be >= 0 with at least one > 0")
        return self


class OrdinalAxis(_DiscreteAxis):
    """Ordered levels; level ``i`` of ``k`` is encoded as ``i / (k - 1)``."""

    kind: Literal["ordinal"] = "ordinal"
    levels: list[Level]

    @property
    def values(self) -> list[Level]:
        return self.levels


class CategoricalAxis(_DiscreteAxis):
    """Unordered choices; choice ``i`` of ``k`` is encoded as ``i / (k - 1)`` in declared
    order (so list choices in a meaningful order where one exists)."""

    kind: Literal["categorical"] = "categorical"
    choices: list[str]
    value_anchors: dict[str, str] = Field(
        default={}, description="Text describing a choice (embedding assessment), by choice."
    )

    @property
    def values(self) -> list[Level]:
        return list(self.choices)

    @model_validator(mode="after")
    def _categorical_extras(self) -> CategoricalAxis:
        if self.items:
            raise ValueError(
                "Likert items need an ordered axis (continuous or ordinal); a questionnaire "
                "keeps a categorical axis's declared value"
            )
        unknown = sorted(set(self.value_anchors) - set(self.choices))
        if unknown:
            raise ValueError(f"value_anchors name unknown choices {unknown}")
        return self


Axis = Annotated[ContinuousAxis | OrdinalAxis | CategoricalAxis, Field(discriminator="kind")]


class Constraint(_Strict):
    """A feasibility rule: ``when`` -> ``then``, or ``forbid``."""

    name: str = ""
    description: str = ""
    when: dict[str, Condition] | None = None
    then: dict[str, Condition] | None = None
    forbid: dict[str, Condition] | None = None

    @model_validator(mode="after")
    def _form(self) -> Constraint:
        implication = self.when is not None or self.then is not None
        if implication == (self.forbid is not None):
            raise ValueError("give either `when` and `then`, or `forbid`")
        if implication and not (self.when and self.then):
            raise ValueError("`when` and `then` must both be non-empty")
        if self.forbid is not None and not self.forbid:
            raise ValueError("`forbid` must be non-empty")
        return self

    def clauses(self) -> list[tuple[str, dict[str, Condition]]]:
        """The constraint's parts as ``(role, conditions)`` pairs."""
        parts = [("when", self.when), ("then", self.then), ("forbid", self.forbid)]
        return [(role, conds) for role, conds in parts if conds]

    @property
    def axes(self) -> set[str]:
        return {axis for _, conds in self.clauses() for axis in conds}


class ConsequentialConfiguration(_Strict):
    """A named region safety testers care about: every condition in ``where`` holds."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    description: str = ""
    where: dict[str, Condition] = Field(min_length=1)


class TraitSpace(_Strict):
    """A trait space; see the module docstring for the file format."""

    name: str
    version: str = "1"
    context: str = Field(min_length=1, description="The population being simulated, in words.")
    axes: list[Axis] = Field(min_length=1)
    constraints: list[Constraint] = []
    consequential: list[ConsequentialConfiguration] = []
    reference: str | None = Field(
        default=None,
        description="Built-in reference map (name or path) used when none is given.",
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> TraitSpace:
        problems = self.problems()
        if problems:
            raise ValueError("\n".join(f"{field}: {reason}" for field, reason in problems))
        return self

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field problems as ``(field path, reason)``: duplicate axis names and
        conditions that name unknown axes or use operators/operands the axis lacks."""
        found: list[tuple[str, str]] = []
        names = [a.name for a in self.axes]
        for i, name in enumerate(names):
            if name in names[:i]:
                found.append((f"axes[{i}].name", f"duplicate axis name {name!r}"))
        for i, constraint in enumerate(self.constraints):
            for role, conds in constraint.clauses():
                found += self._condition_problems(f"constraints[{i}].{role}", conds)
        seen: set[str] = set()
        for i, config in enumerate(self.consequential):
            if config.name in seen:
                found.append((f"consequential[{i}].name", f"duplicate name {config.name!r}"))
            seen.add(config.name)
            found += self._condition_problems(f"consequential[{i}].where", config.where)
        return found

    def _condition_problems(
        self, where: str, conditions: dict[str, Condition]
    ) -> list[tuple[str, str]]:
        found = []
        for axis_name, condition in conditions.items():
            path = f"{where}.{axis_name}"
            axis = self.axis_by_name.get(axis_name)
            if axis is None:
                found.append(
                    (path, f"unknown axis {axis_name!r} (axes: {', '.join(self.axis_by_name)})")
                )
                continue
            for op, operand in condition.operators().items():
                reason = _operand_problem(axis, op, operand)
                if reason:
                    found.append((f"{path}.{op}", reason))
        return found

    @functools.cached_property
    def axis_by_name(self) -> dict[str, ContinuousAxis | OrdinalAxis | CategoricalAxis]:
        return {a.name: a for a in self.axes}

    @property
    def axis_names(self) -> list[str]:
        return [a.name for a in self.axes]

    @property
    def dim(self) -> int:
        """Dimension d of the unit-cube encoding: one coordinate per axis."""
        return len(self.axes)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Short hash of the space's content: caches key on it."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @functools.cached_property
    def grid(self):  # -> personaevo.grid.SpaceGrid (imported lazily: grid imports spaces)
        """The compiled cell grid, encoding and feasibility engine of this space."""
        from personaevo.grid import SpaceGrid

        return SpaceGrid(self)

    def check_traits(self, traits: dict[str, Any]) -> list[str]:
        """Reasons a trait mapping is invalid (empty when valid): unknown or missing axes,
        values out of range or not a level/choice, non-finite numbers, and violated
        constraints. Values are never clipped or coerced."""
        reasons = []
        for key in traits:
            if key not in self.axis_by_name:
                reasons.append(f"unknown axis {key!r}")
        for axis in self.axes:
            if axis.name not in traits:
                reasons.append(f"missing axis {axis.name!r}")
            else:
                problem = value_problem(axis, traits[axis.name])
                if problem:
                    reasons.append(f"{axis.name}: {problem}")
        if reasons:
            return reasons
        return [f"infeasible: {label}" for label in self.violated_constraints(traits)]

    def violated_constraints(self, traits: dict[str, Any]) -> list[str]:
        """Labels of the constraints that a complete, in-range trait mapping violates."""
        violated = []
        for i, constraint in enumerate(self.constraints):
            if constraint.forbid is not None:
                ok = not self.conditions_hold(constraint.forbid, traits)
            else:
                ok = not self.conditions_hold(constraint.when, traits) or self.conditions_hold(
                    constraint.then, traits
                )
            if not ok:
                violated.append(constraint.name or f"constraints[{i}]")
        return violated

    def is_feasible(self, traits: dict[str, Any]) -> bool:
        """True when ``traits`` is complete, in range and satisfies every constraint."""
        return not self.check_traits(traits)

    def conditions_hold(self, conditions: dict[str, Condition], traits: dict[str, Any]) -> bool:
        """True when every per-axis condition holds for the (valid) trait values."""
        return all(
            condition_holds(self.axis_by_name[name], cond, traits[name])
            for name, cond in conditions.items()
        )

    def in_configuration(self, name: str, traits: dict[str, Any]) -> bool:
        """True when ``traits`` lies inside the named consequential configuration."""
        config = next((c for c in self.consequential if c.name == name), None)
        if config is None:
            raise KeyError(f"no consequential configuration named {name!r}")
        return self.conditions_hold(config.where, traits)


def value_problem(axis: ContinuousAxis | OrdinalAxis | CategoricalAxis, value: Any) -> str:
    """Why ``value`` is not a valid value of ``axis`` ("" when it is)."""
    if isinstance(axis, ContinuousAxis):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if not math.isfinite(value):
            return f"non-finite value {value!r}"
        if not axis.low <= value <= axis.high:
            return f"out of range: {value!r} not in [{axis.low}, {axis.high}]"
        return ""
    if axis.index(value) is None:
        return f"unknown value {value!r} (expected one of {axis.values})"
    return ""


def _operand_problem(axis: Any, op: str, operand: Any) -> str:
    if isinstance(axis, ContinuousAxis):
        if op not in _COMPARISONS:
            return (
                f"operator {op!r} does not apply to continuous axis {axis.name!r} "
                "(use lt, le, gt, ge)"
            )
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            return f"expected a number, got {operand!r}"
        return ""
    if isinstance(axis, CategoricalAxis) and op in _COMPARISONS:
        return f"operator {op!r} needs an ordered axis; {axis.name!r} is categorical"
    operands = operand if op in ("in", "not_in") else [operand]
    unknown = [v for v in operands if axis.index(v) is None]
    if unknown:
        return f"unknown value(s) {unknown} for axis {axis.name!r} (expected one of {axis.values})"
    return ""


def condition_holds(axis: Any, condition: Condition, value: Any) -> bool:
    """Evaluate one condition on one valid value of ``axis``."""
    x = float(value) if isinstance(axis, ContinuousAxis) else axis.index(value)
    for op, operand in condition.operators().items():
        if op in ("in", "not_in"):
            member = x in {axis.index(v) for v in operand}
            if member != (op == "in"):
                return False
            continue
        ref = float(operand) if isinstance(axis, ContinuousAxis) else axis.index(operand)
        if not _compare(op, x, ref):
            return False
    return True


def _compare(op: str, x: float, ref: float) -> bool:
    return {
        "lt": x < ref,
        "le": x <= ref,
        "gt": x > ref,
        "ge": x >= ref,
        "eq": x == ref,
        "ne": x != ref,
    }[op]


# ---------------------------------------------------------------------------- loading


def builtin_space_names() -> list[str]:
    """Names of the spaces shipped with personaevo."""
    folder = resources.files("personaevo") / "data" / "spaces"
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_space_path(name: str) -> Path:
    return Path(str(resources.files("personaevo") / "data" / "spaces" / f"{name}.yaml"))


def read_structured_file(path: str | Path) -> Any:
    """Parse a YAML or JSON file, with errors that name the file and the position."""
    path = Path(path)
    if (problem := not_a_file(path, "file")) is not None:
        raise FileFieldError(path, "(file)", problem)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise FileFieldError(path, f"line {err.lineno}", f"invalid JSON: {err.msg}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        reason = getattr(err, "problem", None) or str(err)
        raise FileFieldError(path, where, f"invalid YAML: {reason}") from None


def validation_problems(err: ValidationError) -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(field path, reason)`` pairs."""
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        loc = loc.replace(".continuous", "").replace(".ordinal", "").replace(".categorical", "")
        msg = e["msg"].removeprefix("Value error, ")
        problems.append((loc or "(top level)", msg))
    return problems


def space_from_data(data: Any, source: str | Path = "<data>") -> TraitSpace:
    """Validate parsed data into a TraitSpace, reporting every problem with its field."""
    if not isinstance(data, dict):
        raise FileFieldError(
            source, "(top level)", "expected a mapping with name, context and axes"
        )
    try:
        return TraitSpace.model_validate(data)
    except ValidationError as err:
        raw_problems = validation_problems(err)
        if len(raw_problems) == 1 and raw_problems[0][0] == "(top level)":
            # cross-field problems arrive joined in one message: split them back out
            parts = [p.split(": ", 1) for p in raw_problems[0][1].split("\n")]
            raw_problems = [(p[0], p[1]) if len(p) == 2 else ("(top level)", p[0]) for p in parts]
        raise FileFieldsError(source, raw_problems) from None


def load_space(name_or_path: str | Path) -> TraitSpace:
    """Load a built-in space by name, or a space file (YAML or JSON) by path."""
    text = str(name_or_path)
    if text in builtin_space_names():
        path = builtin_space_path(text)
    else:
        path = Path(text)
        if not path.exists():
            raise InputError(
                f"{text}: not a built-in space ({', '.join(builtin_space_names())}) "
                "and no such file"
            )
    return space_from_data(read_structured_file(path), path)


def resolve_space(space: TraitSpace | str | Path) -> TraitSpace:
    """Accept a TraitSpace, a built-in name or a file path wherever a space is expected."""
    return space if isinstance(space, TraitSpace) else load_space(space)
