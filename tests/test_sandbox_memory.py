"""Host memory is bounded by output size: parsing what a program wrote costs the host at
most ``PARSE_COST_FACTOR`` times its bytes (plus a small floor); the dict bomb, refused
before it is parsed, costs the host less than 4x its bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from personaevo.sandbox._classify import PARSE_COST_FACTOR, parse_budget, parse_cost_bound

HOSTILE = Path(__file__).parent / "hostile"
REPO = Path(__file__).resolve().parent.parent

MEASURE = """
import json, resource, sys
from personaevo.programs import load_program
from personaevo.sandbox import Sandbox, SandboxLimits
program = load_program(sys.argv[1], check=False)
limits = SandboxLimits(wall_seconds=120, cpu_seconds=120, output_mb=64)
with Sandbox(workers=1, limits=limits) as sandbox:
    sandbox.run(program, {"count": 10}, 1, 0)  # warm: the host's own buffers and imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = sandbox.run(program, {"count": int(sys.argv[2])}, 1, 0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"failure": result.failure, "message": result.message,
                  "peak_increase": after - before}))
"""


def test_dict_bomb_costs_the_host_a_small_multiple_of_its_size() -> None:
    count = 10_000_000  # "{}," each: about 30 MB of JSON, under the 64 MB output cap
    written = 3 * count
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(HOSTILE / "dict_bomb.py"), str(count)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["failure"] == "output_too_large", seen
    assert "to parse in the host" in seen["message"]
    assert seen["peak_increase"] <= 4 * written, seen


def test_cost_bound_passes_real_personas_and_refuses_small_value_floods() -> None:
    persona = {
        "id": "sobol-17",
        "traits": {"age": 41.25, "tenure": 3.5, "gender": "female", "channel": "chat",
                   "tech": 0.31, "patience": 0.77, "issue": "billing", "vip": False},
        "description": "A 41-year-old customer, calm, contacting support about billing.",
    }  # fmt: skip
    doc = {"v": 1, "status": "ok", "personas": [persona] * 5000}
    real = json.dumps(doc, separators=(",", ":")).encode()  # as the child writes it
    assert parse_cost_bound(real) <= PARSE_COST_FACTOR * len(real)
    for flood in (b"[" + b",".join([b"{}"] * 2_000_000) + b"]",
                  b"[" + b",".join([b"[]"] * 2_000_000) + b"]",
                  b"[" + b",".join([b'"ab"'] * 2_000_000) + b"]",
                  b"[" + b",".join([b"1.5"] * 2_000_000) + b"]"):  # fmt: skip
        assert parse_cost_bound(flood) > parse_budget(len(flood))
