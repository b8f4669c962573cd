"""From an evolution run's winners to simulated users: the export's path, not a second one.

``train-simulator --run DIR`` (and ``simulate``, ``eval-simulator``, ``export-tau2`` with
``--run``) gets its personas by exporting the run with
:func:`personaevo.export.export_personas`, then reading the exported file as any persona
file is read. So the programs see the same space view (the space with the run's
reference sample, :func:`personaevo.evaluate.generator_space`), get the run's language
model, are measured by the run's assessor when the run measured positions, and fall under
the same count rule (a run that returns more than ``n`` personas fails as ``wrong_count``;
missing or invalid personas are counted by reason) as in evolution and export. The exported
records carry ``rarity`` against the run's reference, which the curriculum reads.

Size: ``n_per_program`` personas per front program, ``n = n_per_program x programs`` in
all, selected by ``maximin`` from a pool of ``4 n`` (the export's defaults). The export's
files land in ``folder`` (``personas.jsonl``, ``personas.jsonl.card.md``,
``personas.jsonl.export.json``; a training run's own folder, so its personas can be inspected and
a resumed run reuses them), and the run directory is left as it was (no ``exports.jsonl``
line).

**Failing programs are reported, not dropped**: :func:`program_problems` gives one line per
front program that failed a run (failure kind, count, first message), wrote invalid or
unmeasurable personas (by reason) or gave no persona at all. The caller logs them; a
training run also writes them to its ``summary.json`` under ``programs``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from personaevo.errors import InputError
from personaevo.export.api import export_paths, export_personas
from personaevo.export.models import ExportSummary
from personaevo.export.pool import ProgramYield
from personaevo.personas import Persona
from personaevo.runfiles import open_run
from personaevo.sandbox import Sandbox
from personaevo.spaces import TraitSpace

EXPORT_FILE = "personas.jsonl"


class RunPersonas(BaseModel):
    """The personas a run's front programs gave through the export, and what went wrong."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    personas: list[Persona]
    space: TraitSpace
    export: ExportSummary
    file: str  # the exported persona file ("" when it was a temporary one)
    problems: list[str]  # one line per front program that failed or gave invalid personas


def program_problems(yields: list[ProgramYield]) -> list[str]:
    """One line per program with failed runs, invalid personas or no usable persona (a
    program whose valid personas were all left out by the selection has not failed; the
    card says what each program gave)::

    NAME: failed 3 of 3 runs (exception: 3; seed 11: ValueError: ...); 0 exported
    NAME: 12 of 40 personas invalid (unknown value: 12); 28 exported
    """
    lines = []
    for y in yields:
        parts = []
        if y.failures:
            kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(y.failures.items()))
            first = f"; {y.messages[0]}" if y.messages else ""
            parts.append(f"failed {sum(y.failures.values())} of {y.runs} runs ({kinds}{first})")
        if y.invalid:
            reasons = ", ".join(
                f"{reason}: {count}"
                for reason, count in sorted(y.invalid_reasons.items(), key=lambda x: -x[1])
            )
            parts.append(f"{y.invalid} of {y.returned} personas invalid ({reasons})")
        if not parts and y.pooled == 0:
            parts.append(f"returned {y.returned} personas for {y.requested} asked, none usable")
        if parts:
            lines.append(f"{y.name}: {'; '.join(parts)}; {y.exported} exported")
    return lines


def personas_from_run(
    run: str | Path,
    folder: str | Path | None = None,
    n_per_program: int = 20,
    seed: int = 0,
    reuse: bool = False,
    log: Callable[[str], None] | None = None,
    sandbox: Sandbox | None = None,
) -> RunPersonas:
    """Export the run's front programs into ``folder`` and read the exported personas back
    (see the module docstring). Without ``folder`` the export goes to a temporary folder,
    removed once read (``file`` is then empty). With ``reuse``, an export already in
    ``folder`` is read instead of made again (a resumed training run). A run whose programs
    give no valid persona is an :class:`InputError` naming why."""
    from personaevo.simulator.sources import load_personas

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="personaevo-run-personas-") as tmp:
            got = personas_from_run(run, tmp, n_per_program, seed, False, log, sandbox)
        return got.model_copy(update={"file": ""})
    say = log or (lambda line: None)
    files = open_run(run)
    out = Path(folder) / EXPORT_FILE
    _, summary_path = export_paths(out)
    if reuse and out.is_file() and summary_path.is_file():
        summary = ExportSummary.model_validate_json(summary_path.read_text(encoding="utf-8"))
        say(f"personas of {files.path}: reusing the export in {out}")
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        summary = export_personas(
            files.path,
            n=n_per_program * len(files.front),
            out=out,
            seed=seed,
            force=True,
            index=False,
            log=log,
            sandbox=sandbox,
            command=f"personas_from_run({str(files.path)!r}, n_per_program={n_per_program}, "
            f"seed={seed}) (personaevo.simulator.winners)",
        )
    problems = program_problems(summary.programs)
    if problems:
        say(f"{len(problems)} of {len(summary.programs)} front programs of {files.path} failed:")
        for line in problems:
            say(f"  {line}")
    if summary.exported == 0:
        raise InputError(f"{files.path}: no front program gave a valid persona: {problems}")
    return RunPersonas(
        personas=load_personas(out, files.space),
        space=files.space,
        export=summary,
        file=str(out),
        problems=problems,
    )
