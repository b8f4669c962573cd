"""The held-out split of a training run, and reading it back for evaluation.

``train-simulator`` holds out a share ``held_out`` of the (persona, goal) pairs (default
:data:`DEFAULT_HELD_OUT`, a quarter, seeded by the run's seed) and writes them to its
output folder:

* ``heldout.jsonl``: one persona record per held-out pair, with its profile facts and the
  id of its goal (``goal``);
* ``heldout_goals.json``: those goals in full (a goal file, ``{"goals": [...]}``, one entry
  per distinct goal id), so that evaluation plays exactly the goals training held out,
  whatever goal source, template or seed it is given.

:func:`held_out_pairs` reads both back: every held-out persona with the goal its record
names. A run written before ``heldout_goals.json`` existed gets its goals again from the
training configuration's goal source and seed, and every composed goal id must match the
recorded one. A record whose goal id is not found is an input error naming the record.

Why a quarter: the evaluation's intervals resample held-out personas, so their number
bounds how narrow an interval can be; with the small persona sets of the experiments
(48 personas) a quarter holds out 12 rather than 10. Rollouts of the training personas
repeat each one many times, so the training side loses little.
"""

from __future__ import annotations

import json
from pathlib import Path

from personaevo.errors import FileFieldError, InputError
from personaevo.personas import read_persona_records, write_personas
from personaevo.simulator.goal_files import goals_for_profiles, load_goal_source, load_goals
from personaevo.simulator.goals import UserGoal
from personaevo.simulator.profiles import Profile, profile_from_persona

DEFAULT_HELD_OUT = 0.25
PERSONAS_FILE = "heldout.jsonl"
GOALS_FILE = "heldout_goals.json"
CONFIG_FILE = "train_config.json"  # the training configuration (training.TrainConfig.save)


def persona_record(profile: Profile, goal: UserGoal) -> dict:
    """The held-out record of one pair: id, traits, profile facts, goal id (and
    description and rarity when known)."""
    record = {
        "id": profile.persona_id,
        "traits": profile.traits,
        "profile": profile.facts,
        "goal": goal.id,
    }
    if profile.description:
        record["description"] = profile.description
    if profile.rarity is not None:
        record["rarity"] = profile.rarity
    return record


def write_held_out(folder: str | Path, pairs: list[tuple[Profile, UserGoal]]) -> None:
    """``heldout.jsonl`` and ``heldout_goals.json`` in ``folder``."""
    folder = Path(folder)
    write_personas(folder / PERSONAS_FILE, [persona_record(p, g) for p, g in pairs])
    goals = {g.id: g.model_dump(mode="json", exclude_none=True) for _, g in pairs}
    text = json.dumps({"goals": list(goals.values())}, indent=1, ensure_ascii=False)
    (folder / GOALS_FILE).write_text(text + "\n", encoding="utf-8")


def is_training_run(path: str | Path) -> bool:
    """Whether ``path`` is a training run's folder (or the ``heldout.jsonl`` in one)."""
    path = Path(path)
    folder = path.parent if path.name == PERSONAS_FILE else path
    return (folder / CONFIG_FILE).is_file() and (folder / PERSONAS_FILE).is_file()


def held_out_pairs(path: str | Path) -> list[tuple[Profile, UserGoal]]:
    """The held-out (profile, goal) pairs of the training run in ``path`` (its folder, or
    its ``heldout.jsonl``); see the module docstring."""
    path = Path(path)
    folder = path.parent if path.name == PERSONAS_FILE else path
    if not (folder / CONFIG_FILE).is_file():
        raise InputError(f"{folder}: not a training run (no {CONFIG_FILE})")
    personas_path = folder / PERSONAS_FILE
    if not personas_path.is_file():
        raise InputError(f"{folder}: the training run has no {PERSONAS_FILE}")
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    seed = int(config.get("seed", 0))
    from personaevo.simulator.sources import load_personas

    personas = load_personas(personas_path)
    records = read_persona_records(personas_path)
    wanted = [record.get("goal") if isinstance(record, dict) else None for record in records]
    for persona, goal_id in zip(personas, wanted, strict=True):
        if not isinstance(goal_id, str):
            raise FileFieldError(personas_path, f"record {persona.id}: goal", "no goal id")
    profiles = [profile_from_persona(p, None, seed) for p in personas]
    if not personas:
        raise InputError(f"{personas_path}: no held-out persona (the run held out none)")
    goals_path = folder / GOALS_FILE
    if goals_path.is_file():
        by_id = {g.id: g for g in load_goals(goals_path)}
        source = goals_path
    else:  # a run from before heldout_goals.json: the goals again from its goal source
        goals, template = load_goal_source(config.get("goals"))
        if goals is not None:
            by_id = {g.id: g for g in goals}
        else:
            composed = goals_for_profiles(profiles, None, template, seed)
            by_id = {g.id: g for g in composed}
        source = Path(config.get("goals") or "the built-in goal template")
    pairs = []
    for profile, goal_id in zip(profiles, wanted, strict=True):
        if goal_id not in by_id:
            raise FileFieldError(
                personas_path,
                f"record {profile.persona_id}: goal",
                f"goal {goal_id!r} is not in {source}",
            )
        pairs.append((profile, by_id[goal_id]))
    return pairs
