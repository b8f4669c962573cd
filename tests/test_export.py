"""personaevo export: pool sampling in the sandbox, selection, records, files, card, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _small_run import build_run, shared_run, small_config
from scipy.spatial import cKDTree

from personaevo.cli import main
from personaevo.errors import InputError
from personaevo.evaluate import generator_space
from personaevo.export import ExportSummary, export_personas, read_records
from personaevo.export.annotate import annotate, required_rows
from personaevo.export.api import export_paths
from personaevo.export.density import FastRarity
from personaevo.export.records import native_of
from personaevo.export.select import select
from personaevo.personas import check_personas
from personaevo.programs import load_program
from personaevo.runfiles import open_run
from personaevo.sandbox import Sandbox, SandboxLimits
from personaevo.spaces import load_space

N = 150


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, limits=SandboxLimits(wall_seconds=60, cpu_seconds=60)) as box:
        yield box


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def files(run):
    return open_run(run)  # its reference is built once per process and shared


@pytest.fixture(scope="module")
def exported(run, sandbox, tmp_path_factory) -> tuple[Path, ExportSummary]:
    out = tmp_path_factory.mktemp("export") / "personas.jsonl"
    summary = export_personas(run, n=N, out=out, sandbox=sandbox, n_probes=1000, seed=3)
    return out, summary


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the file


def test_jsonl_export_loads_with_datasets_and_pandas(exported, tmp_path):
    import datasets

    out, summary = exported
    assert summary.exported == N and summary.pool >= 4 * N - 10
    ds = datasets.load_dataset(
        "json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    frame = pd.read_json(out, lines=True)
    assert len(ds) == len(frame) == N
    for column in (
        "id",
        "traits",
        "description",
        "profile",
        "rarity",
        "cell",
        "rare",
        "rare_cell",
        "rare_combinations",
        "consequential",
        "provenance",
        "space",
        "space_version",
    ):
        assert column in ds.column_names and column in frame.columns, column
    assert set(ds["space"]) == {"customer_support"} and set(ds["space_version"]) == {"1"}
    assert frame["id"].is_unique
    rarity = frame["rarity"].to_numpy()
    assert np.all((rarity >= 0) & (rarity <= 1))
    fronts = {p["name"]: p["program_hash"] for p in (y.model_dump() for y in summary.programs)}
    for provenance in ds["provenance"]:
        assert fronts[provenance["generator"]] == provenance["program_hash"]
        assert provenance["seed"] >= 0 and provenance["n"] >= 1


def test_exported_personas_are_valid_distinct_and_annotated_truthfully(exported, files):
    out, _ = exported
    space = files.space
    records = read_records(out)
    checked = check_personas(records, space)
    assert len(checked.valid) == N and not checked.invalid  # the file is a persona file
    native = native_of(records, space)
    assert len(np.unique(native, axis=0)) == N
    reference = files.reference
    notes = annotate(space, native, reference)
    names = [c.name for c in space.consequential]
    for i, record in enumerate(records):
        assert record["consequential"] == [names[c] for c in np.flatnonzero(notes.consequential[i])]
        assert record["cell"] == space.grid.cell_label(notes.bins[i])
        hits = sum(int(hit[i]) for _, _, hit in notes.combos)
        assert len(record["rare_combinations"]) == hits
        assert record["rare"] == bool(hits or notes.rare_cell[i])
    rarity = reference.rarity(space.grid.unit(native))
    assert np.allclose([r["rarity"] for r in records], rarity, atol=1e-6)


def test_every_reached_rare_combination_and_configuration_is_kept(exported):
    _, summary = exported
    for kind, count in summary.required.items():
        assert count.kept == count.reached, kind
    assert summary.required["rare combination"].reached > 0
    combos = next(r for r in summary.rare if "combinations" in r.kind)
    assert combos.exported == combos.pool > 0
    for config in summary.consequential:
        assert (config.exported > 0) == (config.pool > 0), config.name


def test_provenance_gives_the_persona_again(exported, run, sandbox, files):
    out, _ = exported
    records = read_records(out)
    record = records[len(records) // 2]
    prov = record["provenance"]
    program = next(
        load_program(p)
        for p in (run / "front").glob("*.py")
        if load_program(p).ast_hash == prov["program_hash"]
    )
    view = generator_space(files.space, files.reference, seed=files.config.seed)
    result = sandbox.run(program, view, n=prov["n"], seed=prov["seed"])
    again = next(p for p in result.personas if str(p["id"]) == prov["source_id"])
    assert again["traits"] == record["traits"]


def test_card_compares_with_a_density_matched_sample(exported):
    out, summary = exported
    card = export_paths(out)[0].read_text()
    assert "| metric | better | exported | density-matched |" in card
    assert summary.density_matched_metrics is not None
    assert summary.density_matched_metrics.n_personas == N
    for program in summary.programs:
        assert program.name in card
    assert "rare 2-way combinations" in card
    assert "never reached" in card
    assert summary.unreached_rare_kind == "rare 2-way combinations"
    assert f"{summary.exported_metrics.mc_coverage:.4g}" in card
    saved = ExportSummary.model_validate_json(export_paths(out)[1].read_text())
    assert saved.exported == N and [s.name for s in saved.stages][:2] == ["open run", "sample pool"]
    index = [json.loads(x) for x in (Path(summary.run) / "exports.jsonl").read_text().splitlines()]
    assert str(out.resolve()) in {entry["output"] for entry in index}


def test_same_seed_same_personas_in_parquet_and_csv(exported, run, sandbox, tmp_path, capsys):
    out, _ = exported
    jsonl = read_records(out)
    space = load_space("customer_support")
    parquet = tmp_path / "nested.parquet"
    export_personas(run, n=N, out=parquet, sandbox=sandbox, n_probes=1000, seed=3)
    csv = tmp_path / "nested.csv"  # the parquet file's stem: its card must not collide
    args = ["export", "--run", str(run), "--n", str(N), "--out", str(csv), "--seed", "3"]
    assert main([*args, "--probes", "1000"]) == 0
    assert f"exported {N} personas" in capsys.readouterr().out
    for path, fmt in ((parquet, "parquet"), (csv, "csv")):
        card, summary = export_paths(path)
        assert card.name == f"nested.{fmt}.card.md" and summary.name == f"nested.{fmt}.export.json"
        assert f"{path.name}` ({fmt})" in card.read_text()
        assert ExportSummary.model_validate_json(summary.read_text()).format == fmt
    for path, frame in ((parquet, pd.read_parquet(parquet)), (csv, pd.read_csv(csv))):
        assert len(frame) == N
        records = read_records(path)
        assert [r["id"] for r in records] == [r["id"] for r in jsonl]
        assert np.array_equal(native_of(records, space), native_of(jsonl, space))
        assert [r["provenance"]["source_id"] for r in records] == [
            r["provenance"]["source_id"] for r in jsonl
        ]


# ------------------------------------------------------------------------- selection


def _lattice_pool(n: int, seed: int = 0) -> np.ndarray:
    space = load_space("customer_support")
    V = np.unique(space.grid.sample_uniform(int(n * 1.2), np.random.default_rng(seed)), axis=0)
    return space.grid.unit(V[:n])


def test_maximin_adds_far_points_and_beats_random():
    U = _lattice_pool(3000)
    k = 400
    chosen = select(U, k, "maximin", np.random.default_rng(0))
    assert len(chosen) == k == len(set(chosen.tolist()))
    # every point, when added, was at least 0.9 times as far from the chosen ones as the
    # farthest pool point was (checked exactly, prefix by prefix)
    nearest = np.sqrt(((U - U[chosen[0]]) ** 2).sum(axis=1))
    for c in chosen[1:]:
        assert nearest[c] >= 0.9 * nearest.max() - 1e-9
        nearest = np.minimum(nearest, np.sqrt(((U - U[c]) ** 2).sum(axis=1)))
    radius = {
        m: cKDTree(U[select(U, k, m, np.random.default_rng(0))]).query(U)[0]
        for m in ("maximin", "facility", "none")
    }
    assert radius["maximin"].max() < radius["none"].max()
    assert radius["facility"].mean() < radius["none"].mean()


def test_selection_keeps_required_rows_first():
    U = _lattice_pool(2000, seed=1)
    required = np.array([5, 17, 5, 1999, 3])
    for method in ("maximin", "facility", "none"):
        chosen = select(U, 300, method, np.random.default_rng(2), required)
        assert chosen[:4].tolist() == [5, 17, 1999, 3], method
        assert len(chosen) == 300 == len(set(chosen.tolist())), method
    assert select(U, 2, "maximin", np.random.default_rng(2), required).tolist() == [5, 17, 1999, 3]


def test_required_rows_cover_every_entry_with_few_rows(files):
    space, reference = files.space, files.reference
    V = space.grid.sample_uniform(3000, np.random.default_rng(5))
    notes = annotate(space, V, reference)
    rows, counts = required_rows(notes, 3000)
    kept = notes.rows(rows)
    for (_, keys, hit), (_, kept_keys, kept_hit) in zip(notes.combos, kept.combos, strict=True):
        assert set(keys[hit].tolist()) == set(kept_keys[kept_hit].tolist())
    for c in range(len(space.consequential)):
        inside = notes.consequential[:, c]
        assert set(notes.consequential_cells[c][inside].tolist()) == set(
            kept.consequential_cells[c][kept.consequential[:, c]].tolist()
        )
    entries = sum(c.reached for c in counts.values())
    assert all(c.kept == c.reached for c in counts.values())
    assert len(rows) < entries  # a row covers several entries
    few, few_counts = required_rows(notes, 10)
    assert len(few) == 10 and few_counts["configuration"].kept == len(space.consequential)


def test_fast_rarity_matches_the_reference(bfi_reference):
    space = bfi_reference.space
    fast = FastRarity(bfi_reference)
    U = np.vstack(
        [
            space.grid.unit(space.grid.sample_uniform(150, np.random.default_rng(0))),
            bfi_reference.unit[:100],
        ]
    )
    assert np.array_equal(fast.rarity(U), bfi_reference.rarity(U))
    density = np.exp(fast.log_density(U))
    assert np.allclose(density, np.exp(bfi_reference.log_density(U)), rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------- bad input

FEW = """
def generate(space, n, rng, llm=None):
    out = []
    for i in range(40):
        traits = {
            a.name: a.low if a.kind == "continuous" else a.values[(i * 7 + j) % len(a.values)]
            for j, a in enumerate(space.axes)
        }
        if space.is_feasible(traits) and len(out) < 5:
            out.append({"id": f"few-{i}", "traits": traits})
    bad = dict(out[0]["traits"])
    bad[space.axes[0].name] = "no-such-value"
    return out + [{"id": "bad", "traits": bad}]
"""

BROKEN = """
def generate(space, n, rng, llm=None):
    raise ValueError("this program always fails")
"""


def _run_with_front(run: Path, tmp_path: Path, programs: dict[str, str]) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("exports*"))
    shutil.rmtree(copy / "front")
    (copy / "front").mkdir()
    for name, source in programs.items():
        (copy / "front" / f"{name}.py").write_text(source)
    return copy


def test_more_than_the_programs_can_give_exports_what_there_is(run, sandbox, tmp_path):
    copy = _run_with_front(run, tmp_path, {"few": FEW, "broken": BROKEN})
    out = tmp_path / "few.jsonl"
    messages = []
    summary = export_personas(
        copy, n=50, out=out, sandbox=sandbox, n_probes=500, log=messages.append
    )
    assert summary.exported == summary.pool == 5 == len(read_records(out))
    text = summary.shortfall or ""
    assert "5 distinct valid personas" in text and "fewer than the 50 wanted" in text
    assert "duplicates" in text and "invalid" in text and "broken failed" in text
    assert "exception" in text
    assert any(m.startswith("exported 5 of 50") for m in messages)
    yields = {y.name: y for y in summary.programs}
    assert yields["broken"].failures == {"exception": yields["broken"].runs}
    assert yields["few"].invalid_reasons == {"unknown value": yields["few"].runs}
    assert "Fewer than asked" in export_paths(out)[0].read_text()


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_bad_run_directories_are_clear_errors(run, tmp_path, capsys):
    code, err = _cli(capsys, "export", "--run", str(tmp_path / "nope"))
    assert code == 2 and "nope: no such run directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _cli(capsys, "export", "--run", str(empty))
    assert code == 2 and "no config.yaml: not a personaevo run" in err
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    (corrupt / "config.yaml").write_text("space: [unclosed\n")
    code, err = _cli(capsys, "export", "--run", str(corrupt))
    assert code == 2 and "config.yaml: line" in err and "invalid YAML" in err
    (corrupt / "config.yaml").write_text("space: no_such_space\n")
    code, err = _cli(capsys, "export", "--run", str(corrupt))
    assert code == 2 and "config.yaml: space:" in err and "not a built-in space" in err
    (corrupt / "config.yaml").write_text((run / "config.yaml").read_text())
    (corrupt / "front" / "broken.py").write_text(
        "def generate(space, n, rng, llm=None):\n  import os\n"
    )
    code, err = _cli(capsys, "export", "--run", str(corrupt))
    assert code == 2 and "broken.py: not a valid generator program" in err
    shutil.rmtree(corrupt / "front")
    code, err = _cli(capsys, "export", "--run", str(corrupt))
    assert code == 2 and "no front programs" in err


def test_existing_output_is_kept_without_force(exported, run, sandbox, tmp_path, capsys):
    out, _ = exported
    before = _digest(out)
    with pytest.raises(InputError, match="already exists; use --force"):
        export_personas(run, n=10, out=out, sandbox=sandbox)
    assert _digest(out) == before
    code, err = _cli(capsys, "export", "--run", str(run), "--n", "10", "--out", str(out))
    assert code == 2 and "--force" in err and _digest(out) == before
    target = tmp_path / "p.jsonl"
    target.write_text("precious\n")
    summary = export_personas(
        run, n=10, out=target, sandbox=sandbox, n_probes=500, force=True, select_method="none"
    )
    assert summary.exported == 10 and len(read_records(target)) == 10
    with pytest.raises(InputError, match="suffix says csv"):
        export_personas(run, n=10, out=tmp_path / "x.csv", fmt="jsonl", sandbox=sandbox)


def test_pool_validation_agrees_with_check_personas():
    import random

    from personaevo.export.pool import validate

    for name in ("customer_support", "big_five"):
        space = load_space(name)
        grid = space.grid
        rng = np.random.default_rng(0)
        V = np.vstack(
            [grid.sample_uniform(600, rng), grid.from_uniform(rng.random((600, space.dim)))]
        )
        messy = random.Random(0)
        records = []
        for i, traits in enumerate(grid.to_traits(V)):
            axis = messy.choice(space.axes)
            r = messy.random()
            if r < 0.05:
                traits[axis.name] = float("nan") if axis.kind == "continuous" else "zzz"
            elif r < 0.1:
                traits.pop(axis.name)
            elif r < 0.13:
                traits["extra"] = 1
            elif r < 0.16:
                traits[axis.name] = True
            elif r < 0.19:
                traits[axis.name] = str(traits[axis.name])
            elif r < 0.21:
                traits[axis.name] = [1]
            record = {"id": i, "traits": traits}
            if messy.random() < 0.03:
                record["description"] = 5
            records.append(record)
        checked = check_personas(records, space)
        native, ok, reasons = validate(space, records)
        assert [str(records[i]["id"]) for i in np.flatnonzero(ok)] == [p.id for p in checked.valid]
        assert np.array_equal(native[ok], checked.native)
        assert dict(reasons) == checked.reason_counts()
        assert 0 < ok.sum() < len(records)


def test_a_run_without_reference_exports_without_rarity(run, sandbox, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("exports*"))
    config = (copy / "config.yaml").read_text()
    assert "builtin_reference: true" in config
    (copy / "config.yaml").write_text(
        config.replace("builtin_reference: true", "builtin_reference: false")
    )
    out = tmp_path / "plain.jsonl"
    summary = export_personas(copy, n=40, out=out, sandbox=sandbox, n_probes=500)
    records = read_records(out)
    assert len(records) == 40 and all(r["rarity"] is None and not r["rare"] for r in records)
    assert summary.reference is None and summary.density_matched_metrics is None
    assert summary.required["configuration"].kept == summary.required["configuration"].reached
    card = export_paths(out)[0].read_text()
    assert "no reference population" in card and "| n/a |" in card


# ------------------------------------------------------------- measured positions


def _embedding_run(path: Path, box: Sandbox) -> Path:
    """One generation of a real ``assess: embedding`` run (2 islands of 2 text-writing
    seeds, n=30) through the real loop, run directory, sandbox and measured scoring."""
    from personaevo.assess import EmbeddingAssessor
    from personaevo.evaluate import seed_generator_paths

    seeds = [str(p) for p in seed_generator_paths("embedding") if p.stem.startswith("phrase_")]
    assert len(seeds) == 2
    config = small_config(
        path,
        assess="embedding",
        generations=1,
        population=2,
        n=30,
        probes=300,
        seed=2,
        seeds=seeds,
    )
    return build_run(path, config=config, assessor=EmbeddingAssessor(), sandbox=box)


TEXTLESS = """
def generate(space, n, rng, llm=None):
    out = []
    while len(out) < n:
        traits = {
            a.name: float(rng.uniform(a.low, a.high)) if a.kind == "continuous"
            else a.values[int(rng.integers(len(a.values)))]
            for a in space.axes
        }
        if space.is_feasible(traits):
            out.append({"id": f"t{len(out)}", "traits": traits})
    return out
"""


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory, sandbox) -> Path:
    run = _embedding_run(tmp_path_factory.mktemp("embedding") / "run", sandbox)
    (run / "front" / "textless.py").write_text(TEXTLESS)  # writes no text: nothing to measure
    return run


@pytest.fixture(scope="module")
def measured_export(measured_run, sandbox, tmp_path_factory) -> tuple[Path, ExportSummary]:
    out = tmp_path_factory.mktemp("measured") / "measured.jsonl"
    summary = export_personas(measured_run, n=60, out=out, sandbox=sandbox, n_probes=500, seed=4)
    return out, summary


def test_measured_run_exports_measured_positions(measured_export, measured_run, sandbox):
    from personaevo.assess import EmbeddingAssessor

    out, summary = measured_export
    files = open_run(measured_run)
    space = files.space
    records = read_records(out)
    assert summary.assess == "embedding" and len(records) == summary.exported == 60
    # traits are where the assessor puts each persona's text, measured afresh here
    personas = [
        {
            "id": r["id"],
            "traits": r["declared_traits"],
            "description": r["description"],
            "profile": None if r["profile"] is None else json.loads(r["profile"]),
        }
        for r in records
    ]
    again = EmbeddingAssessor().measure(personas, space, seed=0).records
    assert [a["traits"] for a in again] == [r["traits"] for r in records]
    assert any(r["traits"] != r["declared_traits"] for r in records)  # text and traits differ
    # declared_traits are what the program wrote: run it again from the provenance
    view = generator_space(space, files.reference, seed=files.config.seed)
    programs = {p.ast_hash: p for p in files.front}
    for record in records[:: len(records) // 3][:3]:
        prov = record["provenance"]
        result = sandbox.run(programs[prov["program_hash"]], view, n=prov["n"], seed=prov["seed"])
        written = next(p for p in result.personas if str(p["id"]) == prov["source_id"])
        assert record["declared_traits"] == written["traits"]
        assert record["description"] == written["description"]
    # annotations are computed from the measured positions
    native = native_of(records, space)
    assert len(np.unique(native, axis=0)) == len(records)
    rarity = files.reference.rarity(space.grid.unit(native))
    assert np.allclose([r["rarity"] for r in records], rarity, atol=1e-6)
    notes = annotate(space, native, files.reference)
    assert [r["cell"] for r in records] == [space.grid.cell_label(b) for b in notes.bins]
    assert summary.exported_metrics.n_valid == 60


def test_unmeasurable_personas_are_dropped_and_counted(measured_export):
    _, summary = measured_export
    yields = {y.name: y for y in summary.programs}
    textless = yields["textless"]
    assert textless.returned > 0 and textless.pooled == textless.exported == 0
    assert textless.invalid_reasons == {"unmeasured: no text": textless.returned}
    a = summary.assessment
    assert a is not None and a.method == "embedding"
    assert a.unmeasured == {"no text": textless.returned}
    assert a.personas == sum(y.returned for y in summary.programs)
    assert a.measured + textless.returned == a.personas and a.seconds > 0
    assert set(a.detail["mean_relevance"]) == {
        axis.name for axis in open_run(summary.run).space.axes
    }


def test_card_says_how_positions_were_measured(measured_export):
    out, summary = measured_export
    card = export_paths(out)[0].read_text()
    assert "## Positions" in card and "sentence embeddings" in card
    assert "`declared_traits`" in card and "--assess embedding" in card
    assert "unmeasured: no text" in card  # the textless program's row
    saved = ExportSummary.model_validate_json(export_paths(out)[1].read_text())
    assert saved.assess == "embedding" and saved.assessment == summary.assessment


def test_assess_explicit_exports_the_declared_traits(measured_run, sandbox, tmp_path, capsys):
    out = tmp_path / "declared.jsonl"
    args = ["export", "--run", str(measured_run), "--n", "60", "--out", str(out)]
    assert main([*args, "--seed", "4", "--probes", "500", "--assess", "explicit"]) == 0
    capsys.readouterr()
    records = read_records(out)
    assert len(records) == 60 and all("declared_traits" not in r for r in records)
    summary = ExportSummary.model_validate_json(export_paths(out)[1].read_text())
    assert summary.assess == "explicit" and summary.assessment is None
    assert "the traits each program declared" in export_paths(out)[0].read_text()
    # traits are what the programs wrote: run them again from the provenance
    files = open_run(measured_run)
    view = generator_space(files.space, files.reference, seed=files.config.seed)
    programs = {p.ast_hash: p for p in files.front}
    assert {y.name: y for y in summary.programs}["textless"].pooled > 0
    for record in records[::20]:
        prov = record["provenance"]
        result = sandbox.run(programs[prov["program_hash"]], view, n=prov["n"], seed=prov["seed"])
        written = next(p for p in result.personas if str(p["id"]) == prov["source_id"])
        assert record["traits"] == written["traits"]


def test_declared_traits_of_mixed_types_survive_parquet(measured_export, tmp_path):
    from personaevo.export.records import write_records

    records = read_records(measured_export[0])[:5]
    axis = next(iter(records[0]["declared_traits"]))
    records[0]["declared_traits"][axis] = 3  # not checked when positions are measured
    records[1]["declared_traits"][axis] = "three"
    for fmt in ("parquet", "jsonl"):
        path = tmp_path / f"mixed.{fmt}"
        write_records(path, records, fmt)
        assert read_records(path) == records, fmt


def test_assess_questionnaire_measures_with_the_default_model(
    measured_run, sandbox, tmp_path, tiny_model_dir
):
    """``--assess questionnaire`` on a run without a language model: the tiny model
    answers the space's items for each persona with text."""
    out = tmp_path / "asked.jsonl"
    summary = export_personas(
        measured_run,
        n=3,
        pool_size=4,
        chunk=1,
        out=out,
        sandbox=sandbox,
        n_probes=200,
        assess="questionnaire",
    )
    a = summary.assessment
    assert summary.assess == "questionnaire" and a is not None
    assert a.detail["llm"] == f"transformers:{tiny_model_dir}"
    items = sum(len(axis.items) for axis in open_run(measured_run).space.axes)
    assert a.detail["answers"] == items * (a.personas - a.unmeasured.get("no text", 0)) > 0
    assert a.unmeasured.get("no text") == {y.name: y for y in summary.programs}["textless"].returned
    records = read_records(out)
    assert records and all("declared_traits" in r for r in records)
    assert "Likert items" in export_paths(out)[0].read_text()


COPIER = '''
def generate(space, n, rng, llm=None):
    """Copies respondents of the reference sample verbatim: no invention at all."""
    sample = space.reference_sample
    personas = []
    for i in range(n):
        u = sample.unit[int(rng.integers(len(sample.unit)))]
        traits = {}
        for axis, x in zip(space.axes, u):
            if axis.kind == "continuous":
                traits[axis.name] = axis.low + x * (axis.high - axis.low)
            else:
                traits[axis.name] = axis.values[round(x * (len(axis.values) - 1))]
        personas.append({"id": i, "traits": traits})
    return personas
'''


def test_copies_of_respondents_are_flagged_and_can_be_dropped(run, sandbox, tmp_path):
    from personaevo.evaluate import seed_generator_paths

    uniform = next(p for p in seed_generator_paths() if p.stem == "uniform").read_text()
    copy = _run_with_front(run, tmp_path, {"copier": COPIER, "uniform": uniform})
    # on big_five, whose reference is a real survey (a synthetic one has nobody to copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**config, "space": "big_five"}))
    kept = export_personas(copy, n=60, out=tmp_path / "kept.jsonl", sandbox=sandbox, n_probes=500)
    records = read_records(tmp_path / "kept.jsonl")
    by_program = {}
    for r in records:
        by_program.setdefault(r["provenance"]["generator"], []).append(r["copy_of_respondent"])
    assert all(by_program["copier"]) and not any(by_program["uniform"])
    assert kept.copies == len(by_program["copier"]) > 0 and kept.copies_dropped == 0
    assert "Copies of respondents" in export_paths(tmp_path / "kept.jsonl")[0].read_text()
    # the exported set's metrics do not reward the copies
    assert kept.exported_metrics.reference.copies == kept.copies
    dropped = export_personas(
        copy,
        n=60,
        out=tmp_path / "dropped.jsonl",
        sandbox=sandbox,
        n_probes=500,
        drop_copies=True,
    )
    records = read_records(tmp_path / "dropped.jsonl")
    assert dropped.copies == 0 and dropped.copies_dropped > 0
    assert not any(r["copy_of_respondent"] for r in records)
    assert {r["provenance"]["generator"] for r in records} == {"uniform"}
