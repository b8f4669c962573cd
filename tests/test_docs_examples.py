"""The README and the quickstart page cannot drift from the code: every shell command and
Python snippet they show is run here, in order, in a fresh directory, and their set-up and
test commands are checked against what ``.ci/run`` runs.

Fenced blocks tagged ``bash`` or ``python`` are examples to run; ``text`` blocks show output
and are not run. The set-up block (install and the default job) is not re-run as written,
since the test already runs inside an installed venv: its ``pip`` commands must be the
ones ``.ci/run`` runs, and its last command, the default job, is run as ``personaevo``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
CI_RUN = ROOT / ".ci" / "run"
SETUP_PREFIX = "python3 -m venv .venv"
DEFAULT_JOB = ".venv/bin/personaevo"
TEST_COMMAND = ".venv/bin/python -m pytest"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language tag, its text and the line it starts on."""

    lang: str
    text: str
    line: int


def code_blocks(path: Path) -> list[Block]:
    """The ``bash`` and ``python`` blocks of a Markdown file, in order."""
    source = path.read_text()
    blocks = []
    for m in FENCE.finditer(source):
        if m.group(1) in ("bash", "python"):
            line = source.count("\n", 0, m.start()) + 1
            blocks.append(Block(m.group(1), m.group(2), line))
    return blocks


def commands(text: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip()]


def is_subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def split_blocks(path: Path) -> tuple[Block, list[Block]]:
    """The set-up block (the one that makes the venv) and every other runnable block."""
    blocks = code_blocks(path)
    setup = [b for b in blocks if b.text.startswith(SETUP_PREFIX)]
    assert len(setup) == 1, f"{path.name}: expected one set-up block, found {len(setup)}"
    rest = [b for b in blocks if b is not setup[0] and b.text.strip() != TEST_COMMAND]
    return setup[0], rest


def test_setup_and_test_commands_are_what_ci_runs():
    """The README's install commands are .ci/run's (which adds only ``--quiet``), its test
    command is .ci/run's last line, and the quickstart page shows the same set-up block."""
    ci_lines = [ln.strip().replace(" --quiet", "") for ln in CI_RUN.read_text().splitlines()]
    setup, _ = split_blocks(README)
    steps = [s.strip() for s in setup.text.strip().split("&&")]
    assert steps[-1] == DEFAULT_JOB, steps
    for step in steps[:-1]:
        assert step in ci_lines, f"README set-up step {step!r} is not a line of .ci/run"
    readme_blocks = [b.text.strip() for b in code_blocks(README)]
    assert TEST_COMMAND in readme_blocks, "the README shows no test command block"
    assert [ln for ln in ci_lines if ln][-1] == TEST_COMMAND
    assert split_blocks(QUICKSTART)[0].text == setup.text


def test_readme_examples_are_the_quickstart_pages():
    """Every command the README shows is on the quickstart page, in the same order, and the
    README's Python snippet is the start of the page's; so running the page runs them."""
    _, readme = split_blocks(README)
    _, page = split_blocks(QUICKSTART)
    readme_shell = [c for b in readme if b.lang == "bash" for c in commands(b.text)]
    page_shell = [c for b in page if b.lang == "bash" for c in commands(b.text)]
    assert readme_shell, "the README shows no quickstart commands"
    assert is_subsequence(readme_shell, page_shell), (
        "README commands missing from (or out of order on) docs/quickstart.md: "
        + str([c for c in readme_shell if c not in page_shell])
    )
    readme_py = [b.text for b in readme if b.lang == "python"]
    page_py = [b.text for b in page if b.lang == "python"]
    assert readme_py, "the README shows no Python snippet"
    for snippet in readme_py:
        assert any(p.startswith(snippet) for p in page_py), (
            "the README's Python snippet does not start a snippet of docs/quickstart.md"
        )


def script_for(blocks: list[Block], python: str) -> str:
    """One bash script: the default job, then each block in order; a Python block runs
    from a file of its own so its line numbers match the page."""
    lines = ["set -euo pipefail", "echo '$ personaevo  (the set-up block: the default job)'"]
    lines.append("personaevo")
    for i, b in enumerate(blocks):
        lines.append(f"echo '--- block at line {b.line} ({b.lang})'")
        if b.lang == "bash":
            lines.append(b.text)
        else:
            name = f"snippet_{i}.py"
            lines += [f"cat > {name} <<'PERSONAEVO_SNIPPET'", b.text, "PERSONAEVO_SNIPPET"]
            lines.append(f'"{python}" {name}')
    return "\n".join(lines) + "\n"


@pytest.mark.docs_examples
@pytest.mark.timeout(900)
def test_quickstart_runs_end_to_end(tmp_path, tiny_model_dir):
    """Run the quickstart page (and the README's Python snippet) in a fresh directory, as a
    new user would after the set-up command, and check what the pages say it makes."""
    _, page = split_blocks(QUICKSTART)
    _, readme = split_blocks(README)
    blocks = page + [b for b in readme if b.lang == "python"]
    (tmp_path / "quickstart.sh").write_text(script_for(blocks, sys.executable))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PERSONAEVO_TINY_MODEL"] = str(tiny_model_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        ["bash", "quickstart.sh"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"exit {done.returncode}; last output:\n{output[-6000:]}"
    runs = sorted(tmp_path.glob("runs/run-*"))
    assert len(runs) == 1, runs
    run = runs[0].relative_to(tmp_path)
    # The paths the pages quote are the ones the default job prints.
    assert f"Every metric: {run}/summary.txt" in done.stdout
    assert f"Front programs: {run}/front" in done.stdout
    for made in (
        "personas.jsonl",
        "personas.jsonl.card.md",
        "personas.jsonl.export.json",
        f"{run}/report.html",
        "rollouts.jsonl",
        "runs/simulator/final",
        "runs/simulator/heldout.jsonl",
    ):
        assert (tmp_path / made).exists(), f"the quickstart should have made {made}"
    assert "MC coverage" in done.stdout
