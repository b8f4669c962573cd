"""Benchmark (P5): one GRPO step of ``train-simulator`` against a bare TRL ``GRPOTrainer``.

Both sides train the same model folder with the same LoRA adapter (r ``--lora-r``, all
linear layers), the same batch (``--prompts`` prompts x ``--group`` completions of up to
``--tokens`` tokens), the same GRPO options (loss ``dapo``, beta 0.04, temperature 1.0,
truncated completions masked) and the same prompts: the bare trainer reads the prompts that
``train-simulator``'s pool held at its first step. They differ in what personaevo adds:

* its reward functions (rule judge: persona consistency, goal alignment, role fidelity,
  format; Q&A consistency, which asks the live policy a probe question per row), against
  one trivial reward on the bare side (completion length);
* the on-policy prompt pool, refreshed every ``--refresh-every`` steps by replaying
  ``--conversations`` conversations with the live policy (``refresh`` below; it is not in
  a step's time, and is shown amortized per step).

Each side runs ``--steps`` optimizer steps in a fresh subprocess, ``--rounds`` times,
alternating ours and bare so that the machine's load falls on both alike. A step's time is
the wall time from ``on_step_begin`` to ``on_step_end`` (generation, rewards, loss,
backward, optimizer); the first step of each run is left out (warm-up). Printed per side:
the median step time over all kept steps, the refresh time, and the child's peak resident
memory (``ru_maxrss``); then ``overhead = ours / bare`` (target <= 1.2) per step, and with
the refresh amortized over ``--refresh-every`` steps.

Usage::

    python experiments/bench_grpo_overhead.py [--model smollm2] [--steps 4] [--rounds 1]
        [--prompts 4] [--group 4] [--tokens 32] [--refresh-every 10] [--conversations 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path

opts = json.loads(sys.argv[1])
from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.start, self.prompts = [], None, None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if opts["side"] == "ours" and train_dataloader is not None:
            data = train_dataloader.dataset
            self.prompts = [data[i]["prompt"] for i in range(len(data))]

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


timer = StepTimer()
result = {"side": opts["side"]}
if opts["side"] == "ours":
    from personaevo.simulator import TrainConfig, train_simulator

    config = TrainConfig(
        model=opts["model"], personas=opts["personas"], out=opts["out"], steps=opts["steps"],
        lora=True, lora_r=opts["lora_r"], lora_alpha=2 * opts["lora_r"],
        group_size=opts["group"], prompts_per_step=opts["prompts"],
        max_completion_length=opts["tokens"], refresh_every=opts["refresh_every"],
        rollout_conversations=opts["conversations"], seed=0,
    )
    trained = train_simulator(config, log=lambda line: None, callbacks=[timer])
    summary = json.loads((Path(opts["out"]) / "summary.json").read_text())
    result["refresh_seconds"] = [r["seconds"] for r in summary["refreshes"]]
    Path(opts["prompts_file"]).write_text(json.dumps(timer.prompts))
else:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from personaevo.simulator.training import resolve_model

    path = resolve_model(opts["model"])
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path)
    prompts = json.loads(Path(opts["prompts_file"]).read_text())

    def length_reward(completions, **kwargs):
        return [float(len(c[-1]["content"] if isinstance(c, list) else c)) for c in completions]

    args = GRPOConfig(
        output_dir=opts["out"], max_steps=opts["steps"],
        per_device_train_batch_size=opts["prompts"] * opts["group"],
        num_generations=opts["group"], max_completion_length=opts["tokens"],
        temperature=1.0, top_k=0, learning_rate=1e-5, beta=0.04, loss_type="dapo",
        mask_truncated_completions=True, logging_steps=1, save_strategy="no",
        report_to=[], seed=0, data_seed=0, use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(r=opts["lora_r"], lora_alpha=2 * opts["lora_r"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(
        model=model, reward_funcs=[length_reward], args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[timer], peft_config=lora,
    )
    trainer.train()
result["step_seconds"] = timer.times
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""


def write_personas_file(path: Path, n: int) -> None:
    """``n`` seeded uniform personas of ``customer_support`` (the simulator's input)."""
    import random

    from personaevo.llm.corpus import sample_persona
    from personaevo.personas import write_personas
    from personaevo.spaces import load_space

    space, rng = load_space("customer_support"), random.Random(0)
    write_personas(path, [{"id": f"p{i}", "traits": sample_persona(space, rng)} for i in range(n)])


def run_side(side: str, opts: dict, work: Path, round_index: int) -> dict:
    out = work / f"{side}-{round_index}"
    payload = json.dumps({**opts, "side": side, "out": str(out)})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, payload], capture_output=True, text=True, env=env
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{side} run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--refresh-every", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=16)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is warm-up)")

    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        work = Path(tmp)
        write_personas_file(work / "personas.jsonl", 40)
        opts = {
            "model": args.model, "personas": str(work / "personas.jsonl"),
            "steps": args.steps, "prompts": args.prompts, "group": args.group,
            "tokens": args.tokens, "lora_r": args.lora_r,
            "refresh_every": args.refresh_every, "conversations": args.conversations,
            "prompts_file": str(work / "prompts.json"),
        }  # fmt: skip
        runs: dict[str, list[dict]] = {"ours": [], "bare": []}
        for index in range(args.rounds):
            for side in ("ours", "bare"):  # ours first: it writes the prompts bare reads
                runs[side].append(run_side(side, opts, work, index))
                load = os.getloadavg()[0]
                kept = runs[side][-1]["step_seconds"][1:]
                steps = [round(t, 1) for t in kept]
                print(f"round {index} {side}: steps {steps} s, load {load:.1f}", flush=True)
                print("  " + json.dumps(runs[side][-1]), flush=True)

    median = {s: statistics.median(t for r in runs[s] for t in r["step_seconds"][1:]) for s in runs}
    refresh = statistics.median(t for r in runs["ours"] for t in r["refresh_seconds"])
    amortized = median["ours"] + refresh / args.refresh_every
    print(
        f"\nmodel {args.model}, LoRA r {args.lora_r}, {args.prompts} prompts x {args.group} "
        f"completions <= {args.tokens} tokens, {args.rounds} rounds x {args.steps - 1} kept steps"
    )
    print(f"{'side':<6} {'step s (median)':>16} {'refresh s':>10} {'peak RSS MB':>12}")
    for side in ("ours", "bare"):
        rss = max(r["peak_rss_mb"] for r in runs[side])
        refresh_text = f"{refresh:.1f}" if side == "ours" else "-"
        print(f"{side:<6} {median[side]:>16.1f} {refresh_text:>10} {rss:>12.0f}")
    print(f"overhead per step: {median['ours'] / median['bare']:.2f}x (target <= 1.2)")
    print(
        f"overhead with the refresh amortized over {args.refresh_every} steps: "
        f"{amortized / median['bare']:.2f}x"
    )


if __name__ == "__main__":
    main()
