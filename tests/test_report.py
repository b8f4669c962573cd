"""personaevo report: the data behind it, the HTML, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from _small_run import shared_run

from personaevo.cli import main
from personaevo.errors import InputError
from personaevo.evolution.loop import objective_values
from personaevo.export import export_personas
from personaevo.report import build_report, write_report
from personaevo.report.data import gather, non_dominated
from personaevo.runfiles import open_run
from personaevo.sandbox import Sandbox, SandboxLimits

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def export_file(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-export") / "personas.csv"
    with Sandbox(workers=2, limits=SandboxLimits(wall_seconds=60, cpu_seconds=60)) as box:
        export_personas(run, n=120, out=out, sandbox=box, n_probes=500, seed=5)
    return out


@pytest.fixture(scope="module")
def report(run, export_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(run, out=out, personas=export_file, axes=["patience,age_band"])


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("exports*", "report.html"))
    return copy


# ------------------------------------------------------------------------- the data


def test_front_is_counted_as_the_run_counts_it(run):
    """The report, ``evolve`` and the run directory count the front the same way: one per
    distinct objective vector (``front/*.py``), ties counted apart."""
    files = open_run(run)
    data = gather(files)
    distinct, programs = data.front_size()
    assert distinct == len(list((run / "front").glob("*.py")))
    assert programs >= distinct
    assert data.front_text().startswith(f"{distinct} distinct objective vectors")


def test_final_front_is_the_runs_front(run):
    files = open_run(run)
    data = gather(files)
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    cache = {r.hash: r.evaluation for r in files.evaluations()}
    run_front = {objective_values(cache[e["key"]], files.objectives) for e in checkpoint["front"]}
    last = data.fronts[data.generations[-1]]
    assert {tuple(p) for p in data.points[last]} == run_front
    assert len(data.generations) == 3 and data.generations[0] == 0
    for g in data.generations:  # each generation's front is non-dominated, and never lost
        front = data.points[data.fronts[g]]
        assert len(non_dominated(front)) == len(front)
    outcomes = sum(sum(c.values()) for c in data.outcomes.values())
    assert outcomes == len(files.evaluations())


def test_non_dominated():
    points = np.array([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [2, 0], [1, 1]])
    assert non_dominated(points).tolist() == [0, 1, 2, 4, 5]


# ------------------------------------------------------------------------- the page


def test_report_is_self_contained_with_every_section(report, export_file):
    html = report.read_text()
    for section in ("front", "objectives", "coverage", "failures", "export", "marginals"):
        assert f'id="{section}"' in html, section
    assert 'id="metrics"' in html and "density-matched sample" in html
    assert 'id="llm"' not in html  # no language model in this run
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 7 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # nothing fetched from outside
    assert "patience against age_band" in html
    assert str(export_file) in html


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the Debian driver, named explicitly: Selenium never downloads one
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


FIGURES_JS = """
return Array.from(document.querySelectorAll('img, svg')).map(e => {
  const box = e.getBoundingClientRect();
  const style = window.getComputedStyle(e);
  const natural = e.tagName === 'IMG' ? [e.complete, e.naturalWidth, e.naturalHeight]
                                      : [true, box.width, box.height];
  return {alt: e.getAttribute('alt') || e.tagName, complete: natural[0],
          width: natural[1], height: natural[2], shown_width: box.width,
          shown_height: box.height, visible: style.display !== 'none'
            && style.visibility !== 'hidden'};
});
"""


def check_in_browser(path: Path) -> tuple[list[str], list[str], int]:
    """Console errors, figures not shown, and the number of figures of a page."""
    driver = _browser()
    try:
        driver.get(path.resolve().as_uri())
        figures = driver.execute_script(FIGURES_JS)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    bad = [
        f["alt"]
        for f in figures
        if not (
            f["complete"]
            and f["width"] > 0
            and f["height"] > 0
            and f["shown_width"] > 0
            and f["shown_height"] > 0
            and f["visible"]
        )
    ]
    return errors, bad, len(figures)


HAVE_CHROMIUM = CHROMIUM.exists() and CHROMEDRIVER.exists()
# .ci/run sets PERSONAEVO_REQUIRE_CHROMIUM=1 once it has installed Chromium: then a
# missing browser is a failure, not a skip
needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM and os.environ.get("PERSONAEVO_REQUIRE_CHROMIUM") != "1",
    reason="Chromium from Debian is not installed (apt-get install chromium chromium-driver; "
    ".ci/run installs it)",
)


@needs_chromium
def test_report_loads_in_chromium_with_every_figure_shown(report):
    errors, bad, count = check_in_browser(report)
    assert errors == []
    assert bad == []
    assert count == len(re.findall(r"<img ", report.read_text())) == 7


@needs_chromium
def test_the_browser_check_catches_broken_figures_and_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img alt="broken" src="data:image/png;base64,AAAA">'
        '<img alt="hidden" style="display:none" src="data:image/png;base64,'
        'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==">'
        "<script>console.error('boom')</script></body></html>"
    )
    errors, bad, count = check_in_browser(page)
    assert count == 2 and bad == ["broken", "hidden"]
    assert any("boom" in e for e in errors)


# ---------------------------------------------------------------------- LLM section


def _with_logbook(run: Path, tmp_path: Path, llm: dict | None) -> Path:
    copy = _copy(run, tmp_path)
    rows = [json.loads(line) for line in (copy / "logbook.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.pop("llm", None)
        if llm is not None:
            row["llm"] = {k: v * (i + 1) for k, v in llm.items()}
    (copy / "logbook.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return copy


def test_llm_accounting_shown_only_when_a_model_was_used(run, tmp_path):
    used = {"calls": 3, "prompt_tokens": 1200, "completion_tokens": 340, "seconds": 2.5}
    html, data = build_report(_with_logbook(run, tmp_path / "a", used))
    assert 'id="llm"' in html and "Language-model accounting" in html
    assert data.llm[-1][1]["prompt_tokens"] == 1200 * len(data.logbook)
    assert "3,600" in html  # cumulative prompt tokens at the last generation, in the table
    html, data = build_report(_with_logbook(run, tmp_path / "b", None))
    assert 'id="llm"' not in html and data.llm == []
    zero = dict.fromkeys(used, 0)
    html, _ = build_report(_with_logbook(run, tmp_path / "c", zero))
    assert 'id="llm"' not in html


# ------------------------------------------------------------------------- bad input


def test_report_finds_the_latest_export_or_says_there_is_none(run, tmp_path, export_file):
    copy = _copy(run, tmp_path)
    html, data = build_report(copy)
    assert data.export is None and "No export of this run yet" in html
    (copy / "exports.jsonl").write_text(
        json.dumps({"output": str(tmp_path / "gone.jsonl"), "summary": "x"})
        + "\n"
        + json.dumps({"output": str(export_file), "summary": str(tmp_path / "none.json")})
        + "\n"
    )
    html, data = build_report(copy)
    assert data.export is not None and data.export.path == export_file
    assert len(data.export.native) == 120


def test_corrupt_or_missing_run_files_are_clear_errors(run, tmp_path, capsys):
    copy = _copy(run, tmp_path)
    lines = (copy / "logbook.jsonl").read_text().splitlines()
    (copy / "logbook.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(InputError, match=r"logbook.jsonl: line 2: not valid JSON"):
        build_report(copy)
    (copy / "logbook.jsonl").write_text("\n".join([*lines, '{"gen": 3, "ev']) + "\n")
    html, data = build_report(copy)  # a last line cut short by a kill is skipped, and said
    assert len(data.logbook) == len(lines) and "cut short" in html
    (copy / "logbook.jsonl").write_text('{"gen": "zero"}\n')
    with pytest.raises(InputError, match=r"logbook.jsonl: line 1: gen"):
        build_report(copy)
    (copy / "logbook.jsonl").unlink()
    assert main(["report", str(copy)]) == 2
    assert "no logbook.jsonl" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_existing_report_is_kept_without_force(report, run, export_file, capsys):
    before = report.read_bytes()
    args = ["report", str(run), "--out", str(report), "--personas", str(export_file)]
    assert main(args) == 2 and "--force" in capsys.readouterr().err
    assert report.read_bytes() == before
    assert main([*args, "--axes", "patience,nope", "--force"]) == 2
    assert "--axes 'patience,nope'" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0 and "report written" in capsys.readouterr().out
