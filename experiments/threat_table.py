"""Run every hostile program of ``tests/hostile/`` in the isolated sandbox and print the
outcome and the time of each: the numbers of the threat table in ``docs/sandbox.md``.

Each program runs with the limits of ``tests/test_sandbox.py`` (2 s wall and CPU, 1 GB,
4 MB files and output, 32 processes; the memory programs with 8 s, as there), on a fresh
one-worker sandbox per program so that a worker one of them killed does not colour the
next. The tests (``tests/test_sandbox*.py``, ``tests/test_unloadable_programs.py``) assert
the outcomes; this script only measures them.

Usage: ``python experiments/threat_table.py [--markdown]``
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personaevo.programs import load_program
from personaevo.sandbox import Sandbox, SandboxLimits

HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "hostile"
LIMITS = SandboxLimits(
    wall_seconds=2.0,
    cpu_seconds=2.0,
    memory_mb=1024,
    file_size_mb=4,
    output_mb=4,
    stdio_bytes=4096,
    max_processes=32,
)
ROOMY = LIMITS.model_copy(update={"wall_seconds": 8.0, "cpu_seconds": 8.0})
BIG_OUTPUT = LIMITS.model_copy(update={"output_mb": 64, "wall_seconds": 30, "cpu_seconds": 30})
SPACE = {"axes": ["age", "mood"]}
TRIVIAL = "def generate(space, n, rng, llm=None):\n    return [{'id': 0, 'traits': {}}]\n"


def _inputs(name: str, listener: socket.socket, scratch: str) -> tuple[object, SandboxLimits]:
    if name == "write_outside":
        return {"paths": ["/tmp/escape.txt", f"{scratch}/escape.txt", "../escape.txt"]}, LIMITS
    if name == "kill_host":
        return {"host_pid": os.getpid()}, LIMITS
    if name == "network_connect":
        return {"port": listener.getsockname()[1]}, LIMITS
    if name == "read_host_files":
        return {
            "read": ["/etc/passwd", str(Path.cwd() / "README.md")],
            "list": [],
            "import": [],
        }, LIMITS
    if name == "dict_bomb":
        return {"count": 10_000_000}, BIG_OUTPUT
    if name == "nan_traits":
        return {}, LIMITS
    if name in {"huge_alloc", "huge_numpy_alloc", "grow_until_oom"}:
        return SPACE, ROOMY
    return SPACE, LIMITS


def _outcome(result) -> str:
    if result.ok:
        traits = result.personas[0]["traits"] if result.personas else {}
        shown = ", ".join(f"{k}={v}" for k, v in list(traits.items())[:6])
        return f"ok: {shown}"[:150]
    return f"{result.failure}: {result.message}"[:150]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    names = sorted(p.stem for p in HOSTILE.glob("*.py"))
    with socket.socket() as listener, tempfile.TemporaryDirectory() as scratch:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        rows = []
        for name in names:
            space, limits = _inputs(name, listener, scratch)
            with Sandbox(workers=1, limits=limits) as sandbox:
                program = load_program(HOSTILE / f"{name}.py", check=False)
                start = time.monotonic()
                result = sandbox.run(program, space, 1 if name != "write_outside" else 3, 0)
                seconds = time.monotonic() - start
                healthy = sandbox.run(TRIVIAL, SPACE, 1, 0).ok
            rows.append((name, _outcome(result), seconds, healthy))
    if args.markdown:
        print("| program | outcome | time | next run ok |")
        print("|---|---|---|---|")
        for name, outcome, seconds, healthy in rows:
            print(f"| `{name}.py` | {outcome.replace('|', '/')} | {seconds:.2f} s | {healthy} |")
    else:
        for name, outcome, seconds, healthy in rows:
            print(f"{name:24} {seconds:6.2f} s  next ok={healthy}  {outcome}")


if __name__ == "__main__":
    main()
