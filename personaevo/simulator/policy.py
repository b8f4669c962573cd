"""A model being trained, seen through the :class:`~personaevo.llm.LLM` interface.

On-policy rollouts and the Q&A reward need the *current* weights of the policy, which
live in the trainer's process: :class:`PolicyLLM` wraps that ``(model, tokenizer)`` pair
(a ``transformers`` causal LM, a PEFT model included) and generates with
``model.generate`` on batches of left-padded prompts, in eval mode and without
gradients, restoring training mode afterwards. Sampling with a seed runs inside
:func:`torch.random.fork_rng`, so a rollout does not move the trainer's random stream.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from personaevo.errors import InputError
from personaevo.llm import LLM, Completion, Message, SamplingParams


class PolicyLLM(LLM):
    """Batched generation from an in-memory ``transformers`` model."""

    def __init__(self, model, tokenizer, name: str = "policy", max_batch: int = 64) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_batch = max_batch

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> PolicyLLM:
        """Load a local model folder (``config.json`` and a tokenizer)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise InputError(f"{path}: not a model folder (no config.json)")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder).to(device)
        model.eval()
        return cls(model, tokenizer, name=f"transformers:{folder}")

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        texts = [
            self.tokenizer.apply_chat_template(
                [m.model_dump() for m in conv], tokenize=False, add_generation_prompt=True
            )
            for conv in conversations
        ]
        return self._generate(texts, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self._generate(prompts, params)

    def _generate(self, texts: list[str], params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        for lo in range(0, len(texts), self.max_batch):
            out += self._batch(texts[lo : lo + self.max_batch], params)
        return out

    def _batch(self, texts: list[str], params: SamplingParams) -> list[Completion]:
        import torch

        model, tok = self.model, self.tokenizer
        was_training = model.training
        side = tok.padding_side
        tok.padding_side = "left"
        device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        kwargs = {
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": pad,
            "eos_token_id": eos if eos is not None else tok.eos_token_id,
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        seeded = (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            if params.seed is not None
            else contextlib.nullcontext()
        )
        try:
            model.eval()
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            with seeded, torch.no_grad():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                generated = model.generate(**enc, **kwargs)
        finally:
            tok.padding_side = side
            if was_training:
                model.train()
        width = enc["input_ids"].shape[1]
        eos_ids = set(kwargs["eos_token_id"] if isinstance(kwargs["eos_token_id"], list) else [])
        if not eos_ids:
            eos_ids = {kwargs["eos_token_id"]}
        completions = []
        for row, mask in zip(generated, enc["attention_mask"], strict=True):
            new = row[width:].tolist()
            ended = next((i for i, t in enumerate(new) if t in eos_ids or t == pad), None)
            ids = new if ended is None else new[:ended]
            text = tok.decode(ids, skip_special_tokens=True)
            reason = "stop"
            if ended is None and len(new) >= params.max_tokens:
                reason = "length"
            for stop in params.stop:
                if stop in text:
                    text, reason = text.split(stop, 1)[0], "stop"
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=len(ids),
                    finish_reason=reason,
                )
            )
        return completions
