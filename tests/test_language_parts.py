"""experiments/language_parts.py end to end: the tiny model on tiny sizes, and the LLM
mutation part with a scripted model whose edits are known to apply."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from personaevo import load_space
from personaevo.llm.base import ScriptedLLM

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "language_parts.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("language_parts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_runs_with_the_tiny_model(script, tiny_model_dir, tmp_path):
    out = tmp_path / "parts.txt"
    argv = ["--model", "tiny", "--questionnaire-personas", "4", "--writer-personas", "3"]
    argv += ["--only", "questionnaire", "writer", "--out", str(out)]
    assert script.main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert re.match(r"# \d{4}-\d\d-\d\d \d\d:\d\d UTC, commit \w+; .*model tiny; .*load", text)
    assert "## 1. Questionnaire assessor on 4 phrase-bank personas (big_five)" in text
    # the tiny model is trained on this answer format: every reply parses
    assert "answers 108, parsed 108 (parse rate 1.000); personas measured 4 of 4" in text
    assert "## 2. Two-stage writer: 3 personas written in" in text
    assert re.search(r"descriptions from the model: \d of 3", text)
    for axis in ("openness", "age", "education"):
        assert re.search(rf"^{axis} +[34] ", text, re.M)
    assert "questionnaire: " in text and "prompt tokens/s" in text


def _append_a_line(prompt: str) -> str:
    """A usable edit of the prompt's parent: a module constant added after its last line
    (a SEARCH/REPLACE block, or the whole program when a rewrite is asked for)."""
    source = re.search(r"## Parent program \([^)]*\)\n```python\n(.*?)\n```", prompt, re.S)
    assert source is not None
    program = source.group(1)
    if "a complete rewrite of the parent program" in prompt:
        return f"```python\n{program}\n\nEDITED = 1\n```"
    last = [line for line in program.splitlines() if line.strip()][-1]
    return f"<<<<<<< SEARCH\n{last}\n=======\n{last}\n\nEDITED = 1\n>>>>>>> REPLACE"


def test_mutation_part_counts_applied_and_valid_children(script):
    space = load_space("big_five")
    lines: list[str] = []
    found = script.part_mutation(
        space, ScriptedLLM(_append_a_line), 3, 0, 2, 64, 1, 10, lines.append
    )
    assert found["outcomes"] == {"applied": 3}
    assert found["applied"] == 3 and found["valid"] == 3
    assert "applied children: 3; run in the sandbox and return valid personas: 3" in "\n".join(
        lines
    )


def test_mutation_part_counts_unreadable_replies(script):
    space = load_space("big_five")
    lines: list[str] = []
    found = script.part_mutation(
        space,
        ScriptedLLM(lambda _: "Sure, here is a better program."),
        2,
        0,
        2,
        64,
        0,
        10,
        lines.append,
    )
    assert found["outcomes"] == {"bad_format": 2}
    assert found["applied"] == 0 and found["valid"] == 0
    assert re.search(r"^bad_format +2 +1\.00$", "\n".join(lines), re.M)
