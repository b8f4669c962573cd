"""Goal files and goal templates, and how goals are matched to personas.

**Goal file** (JSON, JSONL or YAML): one :class:`~personaevo.simulator.goals.UserGoal`
object, a list of them, or ``{"goals": [...]}``. The schema follows tau2-bench's user
scenarios with the UGST items added::

    {"id": "refund_broken_blender",
     "persona": "You are polite but firm.",
     "instructions": {"domain": "retail",
                      "reason_for_call": "The blender you ordered arrived broken.",
                      "known_info": {"order_id": "#W2047", "item": "blender"},
                      "unknown_info": [{"text": "the warehouse's return address",
                                        "patterns": ["\\\\d+ \\\\w+ (street|avenue)"]}],
                      "task_instructions": "Ask for a full refund. Refuse store credit."},
     "policy": [{"text": "Never accept store credit", "violated_if": ["store credit is fine"]}],
     "task_objectives": [{"text": "Get a refund for the blender", "mention": ["refund"],
                          "complete_when": ["refund (has been|is|was) (issued|processed)"]}],
     "requirements": [], "preferences": []}

Every field but ``id``, ``instructions.reason_for_call`` and one task objective is optional.
A plain string is accepted wherever an item or unknown-info object is expected.

**A tau2-bench task file** (``tasks.json``: tasks with a ``user_scenario``, or bare user
scenarios) is a goal file too, told apart by its shape or by ``tau2:`` before the path;
each task becomes a goal (:mod:`personaevo.simulator.tau2`).

**Goal template** (YAML or JSON): goals composed per persona::

    variables:                      # seeded per persona
      item: [blender, kettle, laptop]
      order_number: {randint: [1000, 9999]}
    templates:
      - when: {domain: [retail]}    # trait values the persona must have ("*": any value)
        goal: {...a goal whose strings hold ${placeholders}...}

A placeholder ``${key}`` is filled with a profile fact (``name``, ``age``, ``occupation``,
``location``, ...), a trait value or a variable; in regular expressions the value is
escaped. The first template whose ``when`` holds is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personaevo.errors import (
    FileFieldError,
    FileFieldsError,
    InputError,
    not_a_file,
    refuse_duplicate_ids,
)
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.profiles import Profile
from personaevo.spaces import read_structured_file, validation_problems

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REGEX_KEYS = {"mention", "complete_when", "violated_if", "patterns"}


def builtin_goal_path(name: str) -> Path:
    """A file shipped in ``personaevo/data/goals/`` (``template`` -> ``template.yaml``)."""
    folder = resources.files("personaevo") / "data" / "goals"
    for candidate in (name, f"{name}.yaml", f"{name}.json"):
        path = Path(str(folder / candidate))
        if path.is_file():
            return path
    raise InputError(f"no built-in goal file {name!r}")


def builtin_goal_names() -> list[str]:
    folder = Path(str(resources.files("personaevo") / "data" / "goals"))
    return sorted(p.stem for p in folder.iterdir() if p.suffix in (".json", ".yaml", ".yml"))


def _resolve(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.suffix == "" and not candidate.exists():
        return builtin_goal_path(str(path))
    raise FileFieldError(path, "(file)", not_a_file(candidate, "goal file") or "no such goal file")


def read_goal_data(path: Path) -> Any:
    """The parsed content of a goal file: JSONL line by line, else JSON or YAML."""
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    reason = f"not valid JSON ({err})"
                    raise FileFieldError(path, f"line {lineno}", reason) from None
        return rows
    return read_structured_file(path)


def load_goals(path: str | Path) -> list[UserGoal]:
    """Every goal in a goal file (or a built-in one by name); all problems are reported
    together as ``FILE: goals[i].FIELD: REASON``. A tau2-bench task file (``tau2:PATH``,
    or any file of tau2's shape) gives its tasks as goals
    (:func:`personaevo.simulator.tau2.read_tau2_tasks`)."""
    from personaevo.simulator.tau2 import PREFIX, is_tau2_data, read_tau2_tasks

    if str(path).startswith(PREFIX):
        return read_tau2_tasks(path)
    path = _resolve(path)
    data = read_goal_data(path)
    if is_tau2_data(data):
        return read_tau2_tasks(path)
    if isinstance(data, dict) and "goals" in data:
        data = data["goals"]
    if isinstance(data, dict) and "templates" in data:
        raise FileFieldError(path, "templates", "this is a goal template; pass it as a template")
    items = data if isinstance(data, list) else [data]
    if not items:
        raise FileFieldError(path, "goals", "no goal in the file")
    goals, problems = [], []
    for i, item in enumerate(items):
        try:
            goals.append(UserGoal.model_validate(item))
        except ValidationError as err:
            problems += [(f"goals[{i}].{where}", why) for where, why in validation_problems(err)]
    if problems:
        raise FileFieldsError(path, problems)
    refuse_duplicate_ids(path, [g.id for g in goals], "goal")
    return goals


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: dict[str, list[Any] | str] = Field(default_factory=dict)
    goal: dict[str, Any]

    @field_validator("when", mode="before")
    @classmethod
    def _lists(cls, value):
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) or v == "*" else [v] for k, v in value.items()}
        return value


class GoalTemplate(BaseModel):
    """Goals composed per persona (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    source: str = "<template>"
    variables: dict[str, list[Any] | dict[str, list[int]]] = Field(default_factory=dict)
    templates: list[_Template] = Field(min_length=1)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value):
        for name, spec in value.items():
            if isinstance(spec, dict) and (set(spec) != {"randint"} or len(spec["randint"]) != 2):
                raise ValueError(f"{name}: use a list of values or {{randint: [LOW, HIGH]}}")
            if isinstance(spec, list) and not spec:
                raise ValueError(f"{name}: empty list of values")
        return value

    @classmethod
    def load(cls, path: str | Path) -> GoalTemplate:
        path = _resolve(path)
        data = read_goal_data(path)
        if not isinstance(data, dict) or "templates" not in data:
            raise FileFieldError(path, "templates", "a goal template needs a `templates` list")
        try:
            template = cls.model_validate({**data, "source": str(path)})
        except ValidationError as err:
            raise FileFieldsError(path, validation_problems(err)) from None
        template._check(path)
        return template

    def _check(self, path: Path) -> None:
        """Each template must validate as a goal once its placeholders are filled."""
        for i, entry in enumerate(self.templates):
            filled = _fill(entry.goal, _AnyValue())
            try:
                UserGoal.model_validate(filled)
            except ValidationError as err:
                problems = validation_problems(err)
                raise FileFieldsError(
                    path, [(f"templates[{i}].goal.{w}", why) for w, why in problems]
                ) from None

    def compose(self, profile: Profile, seed: int = 0) -> UserGoal:
        """The goal for one persona: the first matching template, its placeholders filled
        from the profile facts, the traits and the variables (seeded by persona id)."""
        i = next((i for i, e in enumerate(self.templates) if _matches(e.when, profile.traits)), -1)
        entry = self.templates[i]
        if i < 0:
            raise InputError(
                f"{self.source}: no template's `when` matches persona {profile.persona_id!r} "
                f"(traits {profile.traits}); add a template without `when`"
            )
        rng = np.random.default_rng([seed, _stable(profile.persona_id), i])
        values: dict[str, Any] = {**{k: v for k, v in profile.traits.items()}, **profile.facts}
        for name, spec in self.variables.items():
            if isinstance(spec, dict):
                low, high = spec["randint"]
                values[name] = int(rng.integers(low, high + 1))
            else:
                values[name] = spec[int(rng.integers(len(spec)))]
        values["persona_id"] = profile.persona_id
        try:
            filled = _fill(entry.goal, values)
        except KeyError as err:
            known = ", ".join(sorted(values))
            raise InputError(
                f"{self.source}: templates[{i}]: unknown placeholder ${{{err.args[0]}}} "
                f"(known for this persona: {known})"
            ) from None
        filled["id"] = f"{filled.get('id', 'goal')}:{profile.persona_id}"
        return UserGoal.model_validate(filled)


class _AnyValue(dict):
    def __missing__(self, key: str) -> str:
        return "x"


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _matches(when: dict[str, Any], traits: dict[str, Any]) -> bool:
    for key, allowed in when.items():
        if key not in traits:
            return False
        if allowed != "*" and traits[key] not in allowed:
            return False
    return True


def _fill(node: Any, values: dict[str, Any], regex: bool = False) -> Any:
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            text = str(values[match.group(1)])
            return re.escape(text) if regex else text

        return _PLACEHOLDER.sub(sub, node)
    if isinstance(node, list):
        return [_fill(x, values, regex) for x in node]
    if isinstance(node, dict):
        return {k: _fill(v, values, regex or k in _REGEX_KEYS) for k, v in node.items()}
    return node


def goals_for_profiles(
    profiles: list[Profile],
    goals: list[UserGoal] | None = None,
    template: GoalTemplate | None = None,
    seed: int = 0,
) -> list[UserGoal]:
    """One goal per profile: composed from ``template``, or drawn (seeded per persona) from
    ``goals``, preferring goals whose ``instructions.domain`` equals the persona's
    ``domain`` trait when it has one."""
    if template is not None:
        return [template.compose(p, seed) for p in profiles]
    if not goals:
        raise InputError("no goals: give a goal file or a goal template")
    chosen = []
    for profile in profiles:
        domain = profile.traits.get("domain")
        pool = [g for g in goals if domain is not None and g.instructions.domain == domain]
        pool = pool or goals
        rng = np.random.default_rng([seed, _stable(profile.persona_id)])
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def profiles_for_goals(
    goals: list[UserGoal], profiles: list[Profile], seed: int = 0
) -> list[Profile]:
    """One profile per goal: the profiles in a seeded order, dealt out in turn (every
    profile is used once before any is used twice)."""
    if not profiles:
        raise InputError("no personas to pair with the goals")
    if not goals:
        raise InputError("no goals to pair with the personas")
    order = np.random.default_rng([seed, len(profiles)]).permutation(len(profiles))
    return [profiles[int(order[k % len(profiles)])] for k in range(len(goals))]


def load_goal_source(path: str | Path | None) -> tuple[list[UserGoal] | None, GoalTemplate | None]:
    """A goal file, a tau2-bench task file or a goal template (told apart by its
    ``templates`` key); ``None`` means the built-in template."""
    if path is None:
        return None, GoalTemplate.load(builtin_goal_path("template"))
    if str(path).startswith("tau2:"):
        return load_goals(path), None
    resolved = _resolve(path)
    data = read_goal_data(resolved)
    if isinstance(data, dict) and "templates" in data:
        return None, GoalTemplate.load(resolved)
    return load_goals(resolved), None
