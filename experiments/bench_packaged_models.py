"""Benchmark the packaged pretrained models (personaevo.llm.packaged) on this machine.

For each model (``--model NAME``, repeatable; default: every registered one) it converts
the packaged GGUF into a fresh model cache (``--cache DIR``, default a temporary folder,
deleted at the end unless given), in a subprocess of its own so that the conversion's
memory is returned, and prints one row: conversion seconds, folder MB, load seconds of
the converted folder (``TransformersLLM``, a new process: imports included, and the model
load alone), and greedy chat throughput: ``--batch`` chat prompts (default 4) x
``--tokens`` new tokens (default 48), ``--repeats`` times (default 3; the best and the
median are printed). The load average is printed before and after each model.

Usage: ``python experiments/bench_packaged_models.py [--model smollm2] [--cache DIR]
[--batch 4] [--tokens 48] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    ("You are a customer calling a phone company.", "How can I help you today?"),
    ("You are a patient retired teacher.", "Describe your ideal weekend."),
    ("Answer in one sentence.", "Why is the sky blue?"),
    ("You are a nervous student.", "How do you feel about your exams?"),
]

CONVERT = """
import json, sys, time
from personaevo.llm.packaged import packaged_model_path
start = time.perf_counter()
path = packaged_model_path(sys.argv[1])
print("RESULT", json.dumps({"path": str(path), "seconds": time.perf_counter() - start}))
"""

MEASURE = """
import json, statistics, sys, time
start = time.perf_counter()
from personaevo.llm import Message, SamplingParams, TransformersLLM
imported = time.perf_counter()
path, prompts = sys.argv[1], json.loads(sys.argv[2])
tokens, repeats = int(sys.argv[3]), int(sys.argv[4])
llm = TransformersLLM(path, device="cpu", dtype="float32")
loaded = time.perf_counter()
conversations = [
    [Message(role="system", content=s), Message(role="user", content=u)] for s, u in prompts
]
params = SamplingParams(max_tokens=tokens, temperature=0.0)
runs = []
for _ in range(repeats):
    t = time.perf_counter()
    replies = llm.chat(conversations, params)
    seconds = time.perf_counter() - t
    runs.append({"seconds": seconds, "tokens": sum(r.completion_tokens for r in replies)})
print("RESULT", json.dumps({
    "load_total": loaded - start, "load_model": loaded - imported, "runs": runs,
    "replies": [r.text for r in replies],
}))
"""


def _run(code: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    for line in done.stderr.splitlines():
        if line.startswith(("converting ", "converted ", "rebuilding ")):
            print(f"  {line}", flush=True)
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    from personaevo.llm.packaged import PACKAGED_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=sorted(PACKAGED_MODELS))
    parser.add_argument("--cache", help="model cache to convert into (default: a temp dir)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-models-"))
    os.environ["PERSONAEVO_MODEL_CACHE"] = str(cache)
    prompts = json.dumps([PROMPTS[i % len(PROMPTS)] for i in range(args.batch)])
    print(f"cache {cache}; {os.cpu_count()} CPUs; batch {args.batch} x {args.tokens} tokens")
    try:
        for name in args.model or list(PACKAGED_MODELS):
            before = os.getloadavg()
            converted = _run(CONVERT, name)
            path = Path(converted["path"])
            megabytes = sum(p.stat().st_size for p in path.iterdir()) / 1e6
            measured = _run(MEASURE, str(path), prompts, str(args.tokens), str(args.repeats))
            rates = [r["tokens"] / r["seconds"] for r in measured["runs"]]
            after = os.getloadavg()
            print(
                f"{name}: conversion {converted['seconds']:.1f} s, folder {megabytes:.0f} MB, "
                f"load {measured['load_total']:.1f} s "
                f"(model alone {measured['load_model']:.1f} s), "
                f"greedy chat {max(rates):.1f} tokens/s best, {statistics.median(rates):.1f} "
                f"median ({measured['runs'][-1]['tokens']} tokens in "
                f"{measured['runs'][-1]['seconds']:.2f} s); load average "
                f"{before[0]:.1f} -> {after[0]:.1f}",
                flush=True,
            )
            print(f"  first reply: {measured['replies'][0]!r}", flush=True)
    finally:
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
