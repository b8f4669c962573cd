"""Runs that survive, without Ray: a run stopped at any point (inside a generation, at
each stage of the checkpoint write, before its first checkpoint) or damaged afterwards
(a torn line, a truncated checkpoint, a lost program) resumes to exactly the state of
an uninterrupted run, and what cannot be repaired is named in one line.

The loop, the run-directory writer, the recovery and the sandbox are the real ones; the
loop's ``evaluate`` runs the batch on a local sandbox and journals each result as it
returns, as the Ray evaluator does. A kill is simulated by raising :class:`KilledError` at
the point: the files are then as a ``kill -9`` there leaves them (every write is
complete or not begun; torn writes are made by hand).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from _run_state import run_state as state
from _small_run import small_config

from personaevo.errors import InputError
from personaevo.evaluate import Evaluation, generator_space, score_run
from personaevo.evolution import Evolution, EvolveConfig, RunDirectory
from personaevo.evolution import store as store_module
from personaevo.evolution.recovery import recover_run
from personaevo.evolution.resume import resume_changes
from personaevo.evolution.run import Progress, _seed_programs, advance, restore
from personaevo.llm.config import LLMConfig
from personaevo.programs import GeneratorProgram
from personaevo.reference import ReferencePopulation
from personaevo.runfiles import open_run
from personaevo.sandbox import Job, Sandbox, SandboxLimits
from personaevo.spaces import resolve_space

GENERATIONS = 3
STAGES = ("evaluations", "logbook", "front", "previous", "checkpoint")


class KilledError(Exception):
    """The simulated ``kill -9``."""


class SandboxEvaluator:
    """The loop's ``evaluate`` on a local sandbox: each result is journaled as it
    returns; ``die_at=(generation, k)`` dies after the k-th result of that generation."""

    def __init__(self, box: Sandbox, config: EvolveConfig, rundir: RunDirectory, die_at=None):
        self.box = box
        self.config = config
        self.rundir = rundir
        self.space = resolve_space(config.space)
        self.reference = ReferencePopulation.default_for(self.space, seed=config.seed)
        self.view = generator_space(self.space, self.reference, seed=config.seed)
        self.die_at = die_at
        self.evo: Evolution | None = None
        self.evaluated: list[str] = []

    def __call__(self, tasks: Iterable[tuple[str, str, str]]) -> dict[str, Evaluation]:
        tasks = list(tasks)
        jobs = [
            Job(
                program=GeneratorProgram(source=src, name=name, ast_hash=key, checked=False),
                space=self.view,
                n=self.config.n,
                seed=self.config.seed,
            )
            for key, src, name in tasks
        ]
        out = {}
        for (key, _, _), result in zip(tasks, self.box.map(jobs), strict=True):
            if self.die_at == (self.evo.generation, len(out)):
                raise KilledError
            evaluation = score_run(
                result, self.space, self.reference, self.config.seed, self.config.probes
            )
            self.rundir.journal(key, evaluation)
            self.evaluated.append(key)
            out[key] = evaluation
        return out


def session(
    path: Path,
    box: Sandbox,
    die_at=None,
    kill_stage: str | None = None,
    monkeypatch=None,
    generations: int = GENERATIONS,
) -> SandboxEvaluator:
    """Start (or resume, to ``generations``) the run in ``path`` and run it to the end,
    or to the kill."""
    rundir = RunDirectory(path)
    recovered = None
    if (path / "config.yaml").exists():
        recovered = recover_run(path)
        wanted = recovered.config.model_copy(update={"generations": generations})
        config, _ = resume_changes(recovered.config, wanted, recovered.generation)
    else:
        config = small_config(path, generations=generations)
    evaluator = SandboxEvaluator(box, config, rundir, die_at)
    objectives = config.resolved_objectives(evaluator.reference is not None)
    programs = _seed_programs(config, recovered)
    if recovered is None:
        rundir.create(config, programs, objectives, evaluator.space.fingerprint)
    evo = Evolution.from_config(config, objectives, evaluator, on_evaluated=rundir.record)
    evaluator.evo = evo
    if recovered is not None:
        restore(evo, recovered)
        if recovered.checkpoint_text is not None:
            rundir.remember_checkpoint(recovered.checkpoint_text)
    if kill_stage is not None:

        def crash(point: str) -> None:
            if point == kill_stage:
                raise KilledError

        monkeypatch.setattr(store_module, "crash_point", crash)
    started = recovered is None or recovered.checkpoint is None
    try:
        advance(evo, rundir, config, programs if started else None, log=lambda line: None)
    except KilledError:
        pass
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
    return evaluator


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2, limits=SandboxLimits(wall_seconds=30, cpu_seconds=30)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def reference(box, tmp_path_factory) -> tuple[dict, list[str]]:
    """The uninterrupted run: its state and the keys it evaluated, in order."""
    path = tmp_path_factory.mktemp("uninterrupted") / "run"
    evaluator = session(path, box)
    return state(path), evaluator.evaluated


@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_at_each_stage_of_the_checkpoint_write_resumes_to_the_same_run(
    stage, box, reference, tmp_path, monkeypatch
):
    path = tmp_path / "run"
    first = session(path, box, kill_stage=f"checkpoint:2:{stage}", monkeypatch=monkeypatch)
    assert json.loads((path / "checkpoint.json").read_text())["generation"] in (1, 2)
    resumed = session(path, box)
    assert state(path) == reference[0]
    assert first.evaluated + resumed.evaluated == reference[1]  # none evaluated twice
    rows = [json.loads(line)["gen"] for line in (path / "logbook.jsonl").read_text().splitlines()]
    assert rows == list(range(GENERATIONS + 1))  # one row per generation
    assert (path / "front").is_symlink() and len(list((path / ".front").iterdir())) == 1


def test_a_kill_mid_generation_runs_no_finished_evaluation_again(box, reference, tmp_path):
    path = tmp_path / "run"
    first = session(path, box, die_at=(2, 3))
    journaled = [json.loads(x)["hash"] for x in (path / "journal.jsonl").read_text().splitlines()]
    assert journaled == first.evaluated[-3:]
    recorded = len((path / "evaluations.jsonl").read_text().splitlines())
    resumed = session(path, box)
    assert state(path) == reference[0]
    assert not set(resumed.evaluated) & set(first.evaluated)
    assert len(resumed.evaluated) == len(reference[1]) - recorded - 3
    assert first.evaluated + resumed.evaluated == reference[1]


def test_a_kill_before_the_first_checkpoint_resumes_from_the_seeds(box, reference, tmp_path):
    path = tmp_path / "run"
    first = session(path, box, die_at=(0, 2))
    assert not (path / "checkpoint.json").exists() and len(first.evaluated) == 2
    recovered = recover_run(path)
    assert recovered.checkpoint is None and len(recovered.pending) == 2
    assert any("before generation 0 finished" in note for note in recovered.notes)
    resumed = session(path, box)
    assert state(path) == reference[0]
    assert first.evaluated + resumed.evaluated == reference[1]


def test_a_finished_run_extended_ends_as_the_longer_uninterrupted_one(box, reference, tmp_path):
    path = tmp_path / "run"
    first = session(path, box, generations=2)
    assert json.loads((path / "checkpoint.json").read_text())["generation"] == 2
    extended = session(path, box, generations=GENERATIONS)
    assert state(path) == reference[0]
    assert first.evaluated + extended.evaluated == reference[1]


def test_torn_last_lines_are_cut_back_and_reported(box, reference, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(2, 2))
    with (path / "evaluations.jsonl").open("a") as handle:
        handle.write('{"hash": "abc", "name": "cut-sh')
    with (path / "journal.jsonl").open("a") as handle:
        handle.write('{"hash": "def", "evalu')
    with (path / "logbook.jsonl").open("a") as handle:
        handle.write('{"gen": 2, "ev')
    recovered = recover_run(path)
    notes = "\n".join(recovered.notes)
    assert "evaluations.jsonl: line" in notes and "cut back to the last whole record" in notes
    assert "journal.jsonl: line" in notes and "logbook.jsonl: had" in notes
    assert len(recovered.pending) == 2
    open_run(path).evaluations()  # the readers accept the repaired file
    session(path, box)
    assert state(path) == reference[0]


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(box, reference, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(3, 1))  # generation 2 checkpointed, 3 under way
    records = [json.loads(x) for x in (path / "evaluations.jsonl").read_text().splitlines()]
    second = sum(record["generation"] == 2 for record in records)
    text = (path / "checkpoint.json").read_text()
    (path / "checkpoint.json").write_text(text[: len(text) // 2])
    recovered = recover_run(path)
    assert recovered.generation == 1
    assert any("checkpoint.prev.json (generation 1)" in note for note in recovered.notes)
    assert len(recovered.pending) == second + 1  # generation 2's records and 3's one
    session(path, box)
    assert state(path) == reference[0]


def test_a_missing_front_program_is_restored_from_front(box, reference, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(3, 0))
    member = json.loads((path / "checkpoint.json").read_text())["front"][0]
    (path / "programs" / f"{member['key']}.py").unlink()
    recovered = recover_run(path)
    assert any("restored from front/" in note for note in recovered.notes)
    session(path, box)
    assert state(path) == reference[0]


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_damage_that_cannot_be_repaired_is_named_in_one_line(box, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(2, 0))
    copy = tmp_path / "copy"

    def fresh() -> Path:
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(path, copy, symlinks=True)
        return copy

    lines = (fresh() / "evaluations.jsonl").read_text().splitlines()
    lines[4] = lines[4][:40]
    (copy / "evaluations.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        recover_run(copy)
    assert "evaluations.jsonl: line 5: not valid JSON" in _one_line(err)
    checkpoint = json.loads((fresh() / "checkpoint.json").read_text())
    front = {m["key"] for m in checkpoint["front"]}
    members = [*checkpoint["seeds"], *(m for island in checkpoint["islands"] for m in island)]
    lost = next(m for m in members if m["key"] not in front)
    (copy / "programs" / f"{lost['key']}.py").unlink()
    with pytest.raises(InputError) as err:
        recover_run(copy)
    assert f"programs/{lost['key']}.py: missing" in _one_line(err)
    assert f"the program of {lost['name']}" in str(err.value)
    (fresh() / "checkpoint.json").write_text('{"generation": 1, "isla')
    (copy / "checkpoint.prev.json").unlink()
    with pytest.raises(InputError) as err:
        recover_run(copy)
    assert "checkpoint.json: not valid JSON" in _one_line(err)
    assert "restore checkpoint.json from a copy of the run" in str(err.value)


def test_resume_on_the_command_line_reports_damage_before_ray_starts(
    box, tmp_path, monkeypatch, capsys
):
    from personaevo.cli import main
    from personaevo.evolution import cluster

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a damaged run")

    monkeypatch.setattr(cluster.ray, "init", no_ray)
    path = tmp_path / "run"
    session(path, box, die_at=(1, 0))
    (path / "checkpoint.json").write_text("")
    (path / "checkpoint.prev.json").unlink(missing_ok=True)
    assert main(["evolve", "--resume", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "checkpoint.json: empty" in err
    assert main(["evolve", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["evolve", "--resume", str(path), "--n", "50"]) == 2
    assert "--n: the run was made with n 40" in capsys.readouterr().err


def test_resume_of_a_finished_run_says_it_is_complete_and_exits_at_once(
    box, reference, tmp_path, monkeypatch, capsys
):
    """``--resume`` of a run that has run every generation neither starts Ray nor writes
    anything: it says the run is complete and how to extend it, and exits 0. Asking for
    more generations still resumes (checked up to the point where Ray would start)."""
    from personaevo.cli import main
    from personaevo.evolution import cluster

    class RayStartedError(Exception):
        pass

    def no_ray(*args, **kwargs):
        raise RayStartedError

    monkeypatch.setattr(cluster.ray, "init", no_ray)
    path = tmp_path / "run"
    session(path, box)
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    assert main(["evolve", "--resume", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: complete: all {GENERATIONS} generations have run" in out
    assert f"--generations N (above {GENERATIONS}) extends it" in out
    assert main(["evolve", "--resume", str(path), "--generations", str(GENERATIONS)]) == 0
    assert "complete" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before
    with pytest.raises(RayStartedError):
        main(["evolve", "--resume", str(path), "--generations", str(GENERATIONS + 1)])


def test_a_moved_and_a_copied_run_resume_where_they_are(box, reference, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(2, 1))
    config_text = (path / "config.yaml").read_text()
    assert str(path) not in config_text and "out: ''" in config_text
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.copytree(path, tmp_path / "copy", symlinks=True)
    path.rename(moved)
    before = {p: p.read_bytes() for p in sorted((tmp_path / "copy").rglob("*")) if p.is_file()}
    session(moved, box)
    assert state(moved) == reference[0]
    assert not path.exists()  # nothing written where the run used to be
    after = {p: p.read_bytes() for p in sorted((tmp_path / "copy").rglob("*")) if p.is_file()}
    assert after == before
    session(tmp_path / "copy", box)
    assert state(tmp_path / "copy") == reference[0]


def test_a_run_written_before_front_links_gets_one(box, tmp_path):
    path = tmp_path / "run"
    session(path, box, die_at=(2, 0))
    target = (path / "front").resolve()
    (path / "front").unlink()
    shutil.copytree(target, path / "front")
    shutil.rmtree(path / ".front")
    session(path, box)
    assert (path / "front").is_symlink()
    assert [p.name for p in (path / ".front").iterdir()] == [(path / "front").resolve().name]


def test_resume_changes_where_and_how_long_but_not_what(tmp_path):
    recorded = small_config(tmp_path, generations=12)
    extended, changes = resume_changes(
        recorded, recorded.model_copy(update={"generations": 50, "workers": 3}), 12
    )
    assert extended.generations == 50 and extended.workers == 3
    assert changes == ["generations 12 -> 50", "workers 1 -> 3"]
    for update, words in (
        ({"seed": 2}, "--seed: the run was made with seed 1, not 2"),
        ({"n": 80}, "another n changes every score"),
        ({"space": "big_five"}, "every score was measured on that space"),
        ({"objectives": ["validity"]}, "selected on those objectives"),
        ({"generations": 5}, "--generations 5: the run has already finished 12"),
    ):
        with pytest.raises(InputError, match=words):
            resume_changes(recorded, recorded.model_copy(update=update), 12)
    served = recorded.model_copy(
        update={"llm": LLMConfig(backend="openai:http://a:8000/v1", model="m")}
    )
    moved = served.model_copy(
        update={"llm": LLMConfig(backend="openai:http://b:8000/v1", model="m")}
    )
    assert resume_changes(served, moved, 0)[0].llm.backend == "openai:http://b:8000/v1"
    other = served.model_copy(
        update={"llm": LLMConfig(backend="openai:http://b:8000/v1", model="other")}
    )
    with pytest.raises(InputError, match="--llm"):
        resume_changes(served, other, 0)


def test_rate_and_eta_count_only_this_session(tmp_path):
    config = small_config(tmp_path, generations=20)
    evo = Evolution.from_config(config, ["validity"], lambda tasks: {})
    evo.generation, evo.evaluations = 10, 800  # restored: done before the resume
    evo.seeds = [object()]
    progress = Progress(evo, config)
    assert progress.eta(evo) is None
    evo.generation, evo.evaluations = 11, 840
    now = progress.started + 4.0
    assert progress.rate(evo, now) == pytest.approx(10.0)  # 40 evaluations in 4 s
    assert progress.eta(evo, now) == pytest.approx(4.0 * 9)
