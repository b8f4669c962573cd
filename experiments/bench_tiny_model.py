"""Benchmark the tiny model: build time on two cores, loss, and what the model learned.

For each recipe variant (``--variant NAME``, repeatable; default: the default recipe) it
builds the model in a fresh temporary folder, with the process pinned to two CPU cores
(``--cores``; variants run side by side on disjoint core pairs with ``--parallel``), then
runs :func:`personaevo.llm.tiny_checks.check_model` on held-out prompts and prints one row:

    variant  params  tokens  build s  tok/s  loss first->last  likert parse  corr
    descr recall  stop recall  stop false

Also prints one training step's time for the default shapes, 1 and 2 threads.

Usage: ``python experiments/bench_tiny_model.py [--variant default --variant v1 ...]
[--parallel] [--checks 60] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The recipe before version 2 (4 layers, 300 steps of 32, the sections' own weights):
V1 = {
    "conversations": 6000,
    "steps": 300,
    "batch_size": 32,
    "lr": 3e-3,
    "warmup": 30,
    "layers": 4,
    "section_weights": {},
}
VARIANTS: dict[str, dict] = {
    "default": {},  # 2 layers, 362 steps of 8 conversations, Likert weight 0.75, lr 5e-3
    "smoke": {"conversations": 300, "steps": 5},
    # Variations of the default:
    "seed1": {"seed": 1},
    "likert0.5": {"steps": 340, "conversations": 2720, "section_weights": {"likert": 0.5}},
    "likert1": {"steps": 390, "conversations": 3120, "section_weights": {"likert": 1.0}},
    "likert1-steps340": {
        "steps": 340,
        "conversations": 2720,
        "section_weights": {"likert": 1.0},
    },
    "likert1-lr3e-3": {
        "steps": 390,
        "conversations": 3120,
        "lr": 3e-3,
        "section_weights": {"likert": 1.0},
    },
    "likert1-lr1e-2": {
        "steps": 390,
        "conversations": 3120,
        "lr": 1e-2,
        "section_weights": {"likert": 1.0},
    },
    "likert1-b4-steps780": {
        "batch_size": 4,
        "steps": 780,
        "conversations": 3120,
        "section_weights": {"likert": 1.0},
    },
    "likert0.5-b16-steps170": {
        "batch_size": 16,
        "steps": 170,
        "conversations": 2720,
        "section_weights": {"likert": 0.5},
    },
    # Variations of the version-1 recipe:
    "v1": V1,
    "v1-steps500": {**V1, "steps": 500},
    "v1-assistant-loss-only": {**V1, "prompt_loss_weight": 0.0},
    "v1-layers2-steps500": {**V1, "layers": 2, "steps": 500},
    "v1-layers2-steps700": {**V1, "layers": 2, "steps": 700},
    "v1-layers3-steps400": {**V1, "layers": 3, "steps": 400},
    "v1-lr5e-3": {**V1, "lr": 5e-3},
    "v1-layers2-b16-steps200": {
        **V1,
        "layers": 2,
        "batch_size": 16,
        "steps": 200,
        "conversations": 3200,
    },
}


def run_variant(name: str, cores: list[int] | None, checks: int, keep: str | None) -> dict:
    if cores:
        os.sched_setaffinity(0, cores)
    import torch

    torch.set_num_threads(len(cores) if cores else min(2, os.cpu_count() or 1))
    from personaevo.llm.tiny import TinyRecipe, build_tiny_model
    from personaevo.llm.tiny_checks import check_model
    from personaevo.llm.transformers_backend import TransformersLLM

    recipe = TinyRecipe(**VARIANTS[name])
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tiny-bench-"))
    out = root / name
    start = time.perf_counter()
    report = build_tiny_model(out, recipe)
    seconds = time.perf_counter() - start
    llm = TransformersLLM(out, device="cpu")
    start = time.perf_counter()
    result = check_model(llm, n=checks)
    check_seconds = time.perf_counter() - start
    return {
        "variant": name,
        "params": report.parameters,
        "tokens": report.tokens_trained,
        "build_s": round(seconds, 1),
        "tok_per_s": round(report.tokens_trained / seconds),
        "loss": f"{report.loss_first:.2f}->{report.loss_last:.2f}",
        **result.model_dump(),
        "check_s": round(check_seconds, 1),
    }


def step_time(threads: int) -> float:
    import torch
    from transformers import Qwen2ForCausalLM

    from personaevo.llm.tiny import TinyRecipe, model_config

    torch.set_num_threads(threads)
    r = TinyRecipe()
    model = Qwen2ForCausalLM(model_config(r, r.vocab_size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, r.vocab_size, (r.batch_size, 128))
    times = []
    for _ in range(6):
        start = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[2:])


def _worker(args: tuple) -> dict:
    return run_variant(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--parallel", action="store_true", help="variants on disjoint core pairs")
    parser.add_argument("--checks", type=int, default=60, help="prompts per check")
    parser.add_argument("--keep", help="folder to keep the built models in")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args()
    variants = args.variant or ["default"]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible")
    from personaevo.llm.tiny import TinyRecipe

    batch = TinyRecipe().batch_size
    for threads in (1, 2):
        secs = step_time(threads)
        print(f"one training step ({batch} x 128 tokens), {threads} thread(s): {secs:.3f} s")
    cpus = sorted(os.sched_getaffinity(0))
    pairs = [cpus[i : i + 2] for i in range(0, len(cpus) - 1, 2)]
    jobs = [(v, pairs[i % len(pairs)], args.checks, args.keep) for i, v in enumerate(variants)]
    rows: list[dict] = []

    def show(row: dict) -> None:
        if not rows:
            print("  ".join(row), flush=True)
        rows.append(row)
        print("  ".join(str(v) for v in row.values()), flush=True)

    if args.parallel and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(len(jobs), len(pairs))) as pool:
            for row in pool.imap_unordered(_worker, jobs):
                show(row)
    else:
        for job in jobs:
            show(run_variant(*job))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
