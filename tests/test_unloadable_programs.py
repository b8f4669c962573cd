"""Programs that cannot be loaded are failures of their own kind, never tracebacks; and
every run removes its sandbox temporary directories, Ray actors' included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personaevo.sandbox import Sandbox
from personaevo.sandbox._leases import DIR_PREFIX, OWNER_LOCK, _abandoned

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "personaevo.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _broken_programs(folder: Path) -> dict[str, Path]:
    files = {
        "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xfd",
        "syntax": b"def generate(space, n, rng, llm=None)\n    return []\n",
        "contract": b"import os\n\ndef generate(space, n, rng, llm=None):\n    return []\n",
        "empty": b"",
        "nul": b"def generate(space, n, rng, llm=None):\n    return [\x00]\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.py"
        paths[name].write_bytes(data)
    return paths


def test_score_reports_unloadable_programs_and_keeps_the_others(tmp_path: Path) -> None:
    broken = _broken_programs(tmp_path)
    good = REPO / "generators" / "uniform.py"
    out = tmp_path / "score.json"
    args = [str(good), *(str(p) for p in broken.values())]
    result = _cli(
        "score", *args, "--n", "20", "--probes", "500", "--workers", "1", "--json", str(out)
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    evaluations = json.loads(out.read_text())["evaluations"]
    kinds = [e["failure"] for e in evaluations]
    assert kinds == [None, "unreadable", "syntax_error", "contract_violation", "contract_violation",
                     "syntax_error"]  # fmt: skip
    assert evaluations[0]["ok"] and evaluations[0]["report"]["n_valid"] == 20
    assert all(e["report"] is None and not e["ok"] for e in evaluations[1:])
    assert "UTF-8" in evaluations[1]["message"] and "'os'" in evaluations[3]["message"]
    for name in broken:
        assert name in result.stdout  # a column and a failure line each


def test_evolve_refuses_a_bad_seed_in_one_line_before_the_run(tmp_path: Path) -> None:
    broken = _broken_programs(tmp_path)
    for name in ("binary", "contract"):
        run_dir = tmp_path / f"run-{name}"
        result = _cli(
            "evolve", "--seeds", str(broken[name]), "--generations", "1", "--out", str(run_dir)
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: seed {broken[name]}: "), lines
        assert not run_dir.exists()


def _own_dirs() -> set[str]:
    parent = tempfile.gettempdir()
    return {
        os.path.join(parent, e)
        for e in os.listdir(parent)
        if e.startswith(DIR_PREFIX) and not e.startswith(DIR_PREFIX + "slots")
    }


def test_closing_a_sandbox_removes_its_directory() -> None:
    with Sandbox(isolation="none") as sandbox:
        path = sandbox._base_dir
        assert os.path.isfile(os.path.join(path, OWNER_LOCK)) and not _abandoned(path)
    assert not os.path.exists(path)


def test_a_killed_owner_leaves_a_directory_the_next_sandbox_removes(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from personaevo.sandbox import Sandbox\n"
        "box = Sandbox(isolation='none')\n"
        "print(box._base_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path and os.path.isdir(path) and not _abandoned(path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while not _abandoned(path) and time.monotonic() < deadline:  # its zygote exits too
        time.sleep(0.05)
    assert _abandoned(path)
    with Sandbox(isolation="none"):
        assert not os.path.exists(path)


def test_ray_actors_close_their_sandboxes() -> None:
    from personaevo.evolution import RayEvaluator
    from personaevo.evolution.evaluator import _close_then_kill
    from personaevo.spaces import load_space

    before = _own_dirs()
    evaluator = RayEvaluator(load_space("customer_support"), None, workers=2, n=5, n_probes=100)
    evaluator.start()
    try:
        during = _own_dirs() - before
        assert len(during) >= 2  # one per actor (others' runs may add theirs)
        # what close() does, before its sweep
        _close_then_kill([slot.actor for slot in evaluator._slots if slot.ready], 30.0)
        evaluator._slots = []
        left = [p for p in during if os.path.exists(p)]
        assert all(not _abandoned(p) for p in left), left  # only live owners' (other runs)
    finally:
        evaluator.close()
