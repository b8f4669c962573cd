"""tau2-bench task files in and out: tau2's tasks and user scenarios as goals, and
personas paired with goals as tau2 tasks.

The models below mirror the parts of tau2-bench's ``src/tau2/data_model/tasks.py`` that
this module reads and writes, at sierra-research/tau2-bench commit
``a2c024725189473d2d7cea3a5cfdbcc67478e41f`` (2026-08-18)::

    Task          {id, description, user_scenario, ticket, initial_state,
                   evaluation_criteria, issues, required_documents, user_tools}
    UserScenario  {persona: str | null, instructions: StructuredUserInstructions | str}
    StructuredUserInstructions
                  {domain, reason_for_call, known_info: str | null,
                   unknown_info: str | null, task_instructions}

Everything this project does not interpret (``description``, ``initial_state``,
``evaluation_criteria`` and any other key) is kept as read and written back unchanged.

**Reading** (:func:`read_tau2_file`, :func:`read_tau2_tasks`): a ``tasks.json`` (a list
of tasks), one task, a list of user scenarios or one scenario (JSON, YAML or JSONL). A
scenario without a task gets the id ``STEM-I``. Each task becomes a
:class:`~personaevo.simulator.goals.UserGoal` with the task's id
(:func:`personaevo.simulator.tau2_text.goal_from_scenario`). Problems are reported together
as ``FILE: tasks[I] (id ID).FIELD: REASON``.

**Writing** (:func:`write_tau2_scenarios`): one task per (profile, goal) pair, with id
``GOAL:PERSONA`` (the goal's id alone when it already ends in ``:PERSONA``). Its
``user_scenario.persona`` is the persona text
(:func:`~personaevo.simulator.tau2_text.persona_text`); the instructions come from the goal,
or verbatim from the tau2 task the goal was read from, whose ``evaluation_criteria`` and
``initial_state`` are kept, so tau2 still grades the task against its database. A goal of
this project's own gets ``evaluation_criteria`` with one natural-language assertion per
task objective ("The agent accomplishes the user's objective: ...", ``reward_basis:
["NL_ASSERTION"]``). Each task also carries a ``personaevo`` key (tau2 ignores keys it does
not know) with the exact profile and goal and the SHA-256 of the scenario's text: reading
the file back returns that goal, patterns included, while the scenario is unedited, and
derives the goal from the text otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError

from personaevo.errors import (
    FileFieldError,
    FileFieldsError,
    InputError,
    not_a_file,
    refuse_duplicate_ids,
)
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.profiles import Profile
from personaevo.spaces import validation_problems

TAU2_COMMIT = "a2c024725189473d2d7cea3a5cfdbcc67478e41f"
EXTENSION_KEY = "personaevo"
PREFIX = "tau2:"
_STANDARD_KEYS = ("id", "description", "user_scenario", "initial_state", "evaluation_criteria")


def _indent(text: str, prefix: str = "\t") -> str:
    """``textwrap.indent`` with its default predicate, as tau2's ``__str__`` methods use it."""
    import textwrap

    return textwrap.indent(text, prefix)


class Tau2Instructions(BaseModel):
    """tau2's ``StructuredUserInstructions``."""

    model_config = ConfigDict(extra="allow")

    domain: str
    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str

    def render(self) -> str:
        """Exactly tau2's ``StructuredUserInstructions.__str__``."""
        lines = [f"Domain: {self.domain}", f"Reason for call:\n{_indent(self.reason_for_call)}"]
        if self.known_info is not None:
            lines.append(f"Known info:\n{_indent(self.known_info)}")
        if self.unknown_info is not None:
            lines.append(f"Unknown info:\n{_indent(self.unknown_info)}")
        lines.append(f"Task instructions:\n{_indent(self.task_instructions)}")
        return "\n".join(lines)


def _instructions_kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "structured"


InstructionsField = Annotated[
    Annotated[Tau2Instructions, Tag("structured")] | Annotated[str, Tag("text")],
    Discriminator(_instructions_kind),
]


class Tau2UserScenario(BaseModel):
    """tau2's ``UserScenario``: who the user is (``persona``) and their situation."""

    model_config = ConfigDict(extra="allow")

    persona: str | None = None
    instructions: InstructionsField

    def render(self) -> str:
        """Exactly tau2's ``UserScenario.__str__``: the text its user simulator receives
        inside ``<scenario>...</scenario>`` in the system prompt."""
        lines = []
        if self.persona is not None:
            lines += ["Persona:", _indent(self.persona)]
        instructions = self.instructions
        text = instructions if isinstance(instructions, str) else instructions.render()
        lines += ["Instructions:", _indent(text)]
        return "\n".join(lines)

    def digest(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()


class Tau2Task(BaseModel):
    """tau2's ``Task``, with the fields this project does not read kept raw."""

    model_config = ConfigDict(extra="allow")

    id: str
    description: dict[str, Any] | None = None
    user_scenario: Tau2UserScenario
    initial_state: dict[str, Any] | None = None
    evaluation_criteria: dict[str, Any] | None = None

    def dump(self) -> dict[str, Any]:
        """The task as tau2 writes it (standard keys first, nulls kept, extras after)."""
        data = self.model_dump(mode="json")
        first = {k: data.pop(k) for k in _STANDARD_KEYS}
        return {**first, **data}

    def extension(self) -> Extension | None:
        """The ``personaevo`` key when it is readable and the scenario is unedited."""
        raw = (self.model_extra or {}).get(EXTENSION_KEY)
        try:
            found = Extension.model_validate(raw) if raw is not None else None
        except ValidationError:
            return None
        if found is None or found.scenario_sha256 != self.user_scenario.digest():
            return None
        return found


class Extension(BaseModel):
    """What an exported task carries for this project: the exact profile and goal."""

    model_config = ConfigDict(extra="ignore")

    persona_id: str
    goal_id: str
    scenario_sha256: str
    profile: Profile
    goal: UserGoal


# --- reading ------------------------------------------------------------------------------


def _read(path: Path) -> Any:
    from personaevo.simulator.goal_files import read_goal_data

    return read_goal_data(path)


def _is_task(item: Any) -> bool:
    return isinstance(item, dict) and "user_scenario" in item


def _is_scenario(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and "instructions" in item
        and "task_objectives" not in item
        and "id" not in item
    )


def is_tau2_data(data: Any) -> bool:
    """Whether parsed file data has tau2's shape: tasks (``user_scenario``) or user
    scenarios (``instructions`` with no ``id`` and no ``task_objectives``, which every goal
    of this project has)."""
    first = data[0] if isinstance(data, list) and data else data
    return _is_task(first) or _is_scenario(first)


def _where(index: int, raw: Any) -> str:
    ident = raw.get("id") if isinstance(raw, dict) else None
    return f"tasks[{index}]" + (f" (id {ident})" if ident is not None else "")


def _clean_loc(loc: str) -> str:
    return loc.replace("instructions.structured", "instructions").replace(
        "instructions.text", "instructions"
    )


def tasks_from_data(data: Any, source: str | Path) -> list[Tau2Task]:
    """Validate parsed tau2 data (see the module docstring for the shapes); every problem
    is reported together, each naming the task index and id and the field."""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise FileFieldError(source, "tasks", "no task in the file")
    stem = Path(str(source)).stem
    tasks: list[Tau2Task] = []
    problems: list[tuple[str, str]] = []
    for i, raw in enumerate(items):
        where = _where(i, raw)
        if _is_task(raw):
            candidate = raw
        elif _is_scenario(raw):
            candidate = {"id": f"{stem}-{i}", "user_scenario": raw}
        else:
            reason = "not a tau2 task (no `user_scenario`) or user scenario (no `instructions`)"
            problems.append((where, reason))
            continue
        try:
            tasks.append(Tau2Task.model_validate(candidate))
        except ValidationError as err:
            prefix = "" if _is_task(raw) else "user_scenario."
            for loc, why in validation_problems(err):
                field = _clean_loc(loc).removeprefix(prefix)
                problems.append((f"{where}.{field}", why))
    if problems:
        raise FileFieldsError(source, problems)
    refuse_duplicate_ids(source, [t.id for t in tasks], "task")
    return tasks


def read_tau2_file(path: str | Path) -> list[Tau2Task]:
    """The tasks of a tau2 file (``tau2:`` before the path is allowed)."""
    path = Path(str(path).removeprefix(PREFIX))
    problem = not_a_file(path, "tau2 task file")
    if problem:
        raise FileFieldError(path, "(file)", problem)
    return tasks_from_data(_read(path), path)


def goal_from_task(task: Tau2Task) -> UserGoal:
    """The goal of one task: the exported goal when the task carries an unedited
    ``personaevo`` key, else derived from the scenario; its id is the task's id."""
    from personaevo.simulator.tau2_text import goal_from_scenario

    found = task.extension()
    if found is not None:
        return found.goal.model_copy(update={"id": task.id})
    return goal_from_scenario(task.user_scenario, task.id)


def read_tau2_tasks(path: str | Path) -> list[UserGoal]:
    """Every task of a tau2 file as a goal; a scenario whose text gives no goal is an
    :class:`InputError` naming the file, the task and the field."""
    from personaevo.simulator.tau2_text import ScenarioError

    path = Path(str(path).removeprefix(PREFIX))
    goals, problems = [], []
    for i, task in enumerate(read_tau2_file(path)):
        where = f"tasks[{i}] (id {task.id}).user_scenario"
        try:
            goals.append(goal_from_task(task))
        except ScenarioError as err:
            problems.append((f"{where}.{err.field}", err.reason))
        except ValidationError as err:
            problems += [(f"{where}.{w}", why) for w, why in validation_problems(err)]
    if problems:
        raise FileFieldsError(path, problems)
    return goals


def load_tau2_source(path: str | Path | None) -> list[Tau2Task] | None:
    """The tasks of ``path`` when it is a tau2 file (``tau2:PATH`` or tau2's shape), else
    None (a goal file or template of this project, or no path)."""
    if path is None:
        return None
    text = str(path)
    if text.startswith(PREFIX):
        return read_tau2_file(text)
    candidate = Path(text)
    if not candidate.is_file():
        return None
    data = _read(candidate)
    return tasks_from_data(data, candidate) if is_tau2_data(data) else None


# --- writing ------------------------------------------------------------------------------


def task_id(profile: Profile, goal: UserGoal) -> str:
    suffix = f":{profile.persona_id}"
    return goal.id if goal.id.endswith(suffix) else f"{goal.id}{suffix}"


def _criteria(goal: UserGoal) -> dict[str, Any]:
    return {
        "actions": [],
        "communicate_info": [],
        "nl_assertions": [
            f"The agent accomplishes the user's objective: {item.text}"
            for item in goal.task_objectives
        ],
        "reward_basis": ["NL_ASSERTION"],
    }


def task_for(profile: Profile, goal: UserGoal, original: Tau2Task | None = None) -> Tau2Task:
    """The tau2 task of one (profile, goal) pair (see the module docstring)."""
    from personaevo.simulator.tau2_text import reconcile, scenario_for

    profile = reconcile(profile, goal)
    scenario = scenario_for(profile, goal, original.user_scenario if original else None)
    data: dict[str, Any] = original.dump() if original is not None else {}
    data.pop(EXTENSION_KEY, None)
    description = {
        "purpose": f"personaevo persona {profile.persona_id} with goal {goal.id}",
        "relevant_policies": None,
        "notes": None,
    }
    data.update(
        id=task_id(profile, goal),
        description=data.get("description") or description,
        user_scenario=scenario.model_dump(mode="json"),
        initial_state=data.get("initial_state"),
        evaluation_criteria=data.get("evaluation_criteria") if original else _criteria(goal),
    )
    data[EXTENSION_KEY] = Extension(
        persona_id=profile.persona_id,
        goal_id=goal.id,
        scenario_sha256=scenario.digest(),
        profile=profile,
        goal=goal,
    ).model_dump(mode="json")
    return Tau2Task.model_validate(data)


def tasks_for_pairs(
    pairs: Sequence[tuple[Profile, UserGoal]], originals: dict[str, Tau2Task] | None = None
) -> list[Tau2Task]:
    """One task per pair; ``originals`` maps goal ids to the tau2 tasks they came from."""
    originals = originals or {}
    tasks = [task_for(p, g, originals.get(g.id)) for p, g in pairs]
    ids = [t.id for t in tasks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"the same persona has the same goal twice: task ids {duplicates}")
    return tasks


def write_tau2_scenarios(
    path: str | Path,
    pairs: Sequence[tuple[Profile, UserGoal]],
    originals: dict[str, Tau2Task] | None = None,
    force: bool = False,
) -> list[Tau2Task]:
    """Write the pairs as a tau2 ``tasks.json`` (a JSON list, 4-space indent like tau2's
    own files), atomically; an existing file is kept unless ``force``."""
    from personaevo.export.records import atomic_write

    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path}: exists; pass --force to overwrite")
    tasks = tasks_for_pairs(pairs, originals)
    text = json.dumps([t.dump() for t in tasks], indent=4, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return tasks
