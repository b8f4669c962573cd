"""Where simulated users come from: a persona file, or the Pareto front of an evolution run.

* A **persona file** (JSONL, :mod:`personaevo.personas`; an export's records carry
  ``rarity`` too) is validated in full before anything runs: against ``space`` when one is
  given (every axis present, in range and feasible), otherwise the record schema only.
  Any invalid record stops the load with ``FILE: record I (id ID): REASON`` lines.
* A **run directory** (``personaevo evolve --out DIR``) is exported
  (:mod:`personaevo.simulator.winners`: the export's own code, with the run's reference
  sample, language model, assessor and count rule), and the exported personas are read
  like a persona file. Programs that failed are logged, one line each, never dropped
  silently. This is how winning generators reach the simulator trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from personaevo.errors import FileFieldError, InputError
from personaevo.personas import Malformed, Persona, check_personas, read_persona_records
from personaevo.simulator.profiles import Profile, profile_from_persona
from personaevo.spaces import TraitSpace, resolve_space

MAX_LISTED = 5


def load_personas(path: str | Path, space: TraitSpace | None = None) -> list[Persona]:
    """Every persona of a persona file, or an :class:`InputError` listing invalid ones."""
    path = Path(path)
    records = read_persona_records(path)
    if not records:
        raise FileFieldError(path, "(file)", "no persona in the file")
    if space is not None:
        checked = check_personas(records, space)
        problems = [
            f"record {p.index + 1}" + (f" (id {p.id})" if p.id else "") + f": {p.reasons[0]}"
            for p in checked.invalid
        ]
        personas = checked.valid
    else:
        problems, personas = [], []
        for index, record in enumerate(records):
            persona, reason = _schema(record)
            if persona is None:
                problems.append(f"record {index + 1}: {reason}")
            else:
                personas.append(persona)
    if problems:
        listed = "\n".join(f"{path}: {p}" for p in problems[:MAX_LISTED])
        more = len(problems) - MAX_LISTED
        suffix = f"\n{path}: ... and {more} more invalid records" if more > 0 else ""
        raise InputError(
            f"{listed}{suffix}\n{path}: {len(problems)} of {len(records)} records are invalid"
        )
    ids = [p.id for p in personas]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:MAX_LISTED]
        raise FileFieldError(path, "id", f"duplicate persona ids {dup}")
    return personas


def _schema(record) -> tuple[Persona | None, str]:
    if isinstance(record, Malformed):
        return None, f"malformed: {record.reason}"
    try:
        persona = Persona.model_validate(record)
    except Exception as err:  # pydantic's ValidationError, with the field in its message
        first = err.errors()[0] if hasattr(err, "errors") else {"loc": (), "msg": str(err)}
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return None, f"malformed: {where}: {first['msg']}"
    if not persona.traits:
        return None, "traits: empty"
    return persona, ""


def load_profiles(
    personas: str | Path | None = None,
    run: str | Path | None = None,
    space: TraitSpace | str | None = None,
    seed: int = 0,
    n_per_program: int = 20,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Profile], TraitSpace | None]:
    """Profiles from a persona file or a run directory (exactly one of them). A run is
    exported to a temporary folder (:func:`personaevo.simulator.winners.personas_from_run`)
    and its failing programs are passed to ``log``, one line each."""
    if (personas is None) == (run is None):
        raise InputError("give exactly one of a persona file (--personas) or a run (--run)")
    resolved = resolve_space(space) if space is not None else None
    if run is not None:
        from personaevo.simulator.winners import personas_from_run

        got = personas_from_run(run, None, n_per_program, seed, log=log)
        found, resolved = got.personas, got.space
    else:
        found = load_personas(personas, resolved)
    return [profile_from_persona(p, resolved, seed) for p in found], resolved
