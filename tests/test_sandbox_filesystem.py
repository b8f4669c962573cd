"""The sandbox's filesystem is an allow-list: the interpreter's files, a private tmpfs and
its own /proc; none of the host's files (``/etc``, the checkout, other runs' files)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from personaevo.programs import load_program
from personaevo.sandbox import Sandbox, SandboxLimits, _rootfs

HOSTILE = Path(__file__).parent / "hostile"
REPO = Path(__file__).resolve().parent.parent
LIMITS = SandboxLimits(wall_seconds=20, cpu_seconds=20)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    with Sandbox(workers=1, limits=LIMITS) as sb:
        if not sb.isolation.mount:
            pytest.skip(f"no mount namespace here: {sb.isolation.notes}")
        yield sb


def _probe(sandbox: Sandbox, read=(), listed=(), imports=()) -> dict:
    program = load_program(HOSTILE / "read_host_files.py", check=False)
    space = {"read": list(read), "list": list(listed), "import": list(imports)}
    result = sandbox.run(program, space, 1, 0)
    assert result.ok, result.message + result.traceback
    return result.personas[0]["traits"]


def test_host_files_cannot_be_read(sandbox: Sandbox, tmp_path: Path) -> None:
    other_run = Path("/tmp") / f"personaevo-test-{uuid.uuid4().hex}" / "config.yaml"
    other_run.parent.mkdir()
    other_run.write_text("secret: another run's configuration\n")
    mine = tmp_path / "personas.jsonl"
    mine.write_text('{"id": 1}\n')
    try:
        paths = ["/etc/passwd", "/etc/hostname", str(REPO / "README.md"), str(other_run), str(mine)]
        seen = _probe(sandbox, read=paths)
    finally:
        other_run.unlink()
        other_run.parent.rmdir()
    assert {p: seen[p] for p in paths} == {p: "FileNotFoundError" for p in paths}


def _allowed_top_level() -> set[str]:
    """The top-level names the new root may hold: the first component of every path the
    allow-list exposes (computed here, where more libraries are loaded than in the
    zygote: a superset), the host's top-level symlinks, and the sandbox's own entries.
    Derived, not listed, so a checkout under ``/check`` or ``/srv/ci`` passes too."""
    exposed = _rootfs.exposed_paths(str(REPO / "personaevo"))
    names = {Path(p).parts[1] for p in exposed if len(Path(p).parts) > 1}
    names |= {e.name for e in Path("/").iterdir() if e.is_symlink()}
    return names | {"dev", "etc", "proc", "tmp", "var", "sandbox-work"}


def test_only_the_allow_list_is_visible(sandbox: Sandbox) -> None:
    seen = _probe(sandbox, listed=["/", "/dev", "/etc", str(REPO)])
    assert set(seen["/"]) <= _allowed_top_level()
    assert "sys" not in seen["/"] and "boot" not in seen["/"]
    assert seen["/dev"] == ["null", "zero"]  # no urandom, shm, tty, ptmx
    assert seen["/etc"] == ["ld.so.cache"]
    # the package, not the checkout (and the interpreter's venv when it lives in the
    # checkout, as CI's .venv does: its site-packages is on the allow-list)
    expected = {"personaevo"}
    prefix = Path(sys.prefix).resolve()
    if prefix.is_relative_to(REPO):
        expected.add(prefix.relative_to(REPO).parts[0])
    assert set(seen[str(REPO)]) == expected


def test_the_scientific_stack_still_imports(sandbox: Sandbox) -> None:
    modules = ["numpy", "scipy", "scipy.stats", "sklearn", "sklearn.ensemble", "scipy.signal"]
    seen = _probe(sandbox, imports=modules)
    assert {m: seen[m] for m in modules} == {m: "imported" for m in modules}
