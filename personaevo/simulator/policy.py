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
from dataclasses import dataclass
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
        tok = self.tokenizer
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        completions = []
        for prompt, generated in zip(ids, self.generate_ids(ids, params), strict=True):
            text = tok.decode(generated.ids, skip_special_tokens=True)
            reason = "length" if generated.truncated else "stop"
            for stop in params.stop:
                if stop in text:
                    text, reason = text.split(stop, 1)[0], "stop"
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=len(prompt),
                    completion_tokens=len(generated.ids),
                    finish_reason=reason,
                )
            )
        return completions

    def terminators(self) -> set[int]:
        """The token ids that end a generation: the model's end-of-sequence ids, else the
        tokenizer's."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos}

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams) -> list[GeneratedIds]:
        """Sample a continuation of each token sequence, ``max_batch`` at a time (left
        padded, eval mode, no gradients; seeded as in the module docstring)."""
        out: list[GeneratedIds] = []
        for lo in range(0, len(prompts), self.max_batch):
            out += self._generate_batch(prompts[lo : lo + self.max_batch], params)
        return out

    def _generate_batch(
        self, prompts: list[list[int]], params: SamplingParams
    ) -> list[GeneratedIds]:
        import torch

        model, tok = self.model, self.tokenizer
        was_training = model.training
        device = next(model.parameters()).device
        ends = self.terminators()
        pad = tok.pad_token_id if tok.pad_token_id is not None else min(ends)
        kwargs = {
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": pad,
            "eos_token_id": sorted(ends),
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        seeded = (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            if params.seed is not None
            else contextlib.nullcontext()
        )
        try:
            model.eval()
            with seeded, torch.no_grad():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                generated = model.generate(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs
                )
        finally:
            if was_training:
                model.train()
        out = []
        for row in generated:
            new = row[width:].tolist()
            ended = next((i for i, t in enumerate(new) if t in ends or t == pad), None)
            if ended is None:
                out.append(GeneratedIds(ids=new, end=None, truncated=len(new) >= params.max_tokens))
            else:
                end = new[ended] if new[ended] in ends else None
                out.append(GeneratedIds(ids=new[:ended], end=end, truncated=False))
        return out


class TrainerPolicy(PolicyLLM):
    """The model a TRL trainer is training, generating as TRL's own generation does:
    inside ``trl.models.unwrap_model_for_generation`` (the unwrapped model, gradient
    checkpointing off while sampling; with it on, every new token recomputes the whole
    sequence)."""

    def __init__(self, trainer, tokenizer, name: str = "policy") -> None:
        super().__init__(trainer.model, tokenizer, name=name)
        self.trainer = trainer

    def generate_ids(self, prompts: list[list[int]], params: SamplingParams) -> list[GeneratedIds]:
        from trl.models import unwrap_model_for_generation

        trainer = self.trainer
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model:
            self.model = model
            return super().generate_ids(prompts, params)


@dataclass
class GeneratedIds:
    """One sampled continuation: its tokens before the terminator, the terminator when it
    was an end-of-sequence id (None for a padding id or none), and whether it hit the
    token limit without ending."""

    ids: list[int]
    end: int | None
    truncated: bool
