"""In-process generation with Hugging Face transformers: any local model folder, CPU or GPU.

Chat turns go through the tokenizer's chat template; prompts are left-padded and generated
as one batch. Seeds: a call with ``seed=s`` samples its whole batch from torch's generator
seeded with ``s`` (inside :func:`torch.random.fork_rng`, so the global state is untouched),
so the same call — same inputs in the same order, same parameters, same device and dtype —
gives the same completions; a request's text may depend on the other requests in its
batch. Calls are serialized by a lock, so threads can share one instance.

Stop strings end generation (transformers' ``StopStringCriteria``) and are cut from the
text, with ``finish_reason="stop"``; EOS also gives ``"stop"``; running out of
``max_tokens`` gives ``"length"``. ``completion_tokens`` counts the generated tokens up to
and including the one that stopped it; ``prompt_tokens`` the prompt's tokens.
"""

from __future__ import annotations

import threading
from pathlib import Path

from personaevo.errors import InputError
from personaevo.llm.base import LLM, Completion, Message, SamplingParams

__all__ = ["TransformersLLM", "check_model_folder"]

DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_model_folder(path: str | Path, spec: str) -> Path:
    """``path`` as a model folder, or an :class:`InputError` naming ``spec``."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"{spec}: model folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise InputError(f"{spec}: {str(folder)!r} is not a model folder (no config.json)")
    return folder


class TransformersLLM(LLM):
    """A causal LM from ``path`` (``AutoModelForCausalLM`` + ``AutoTokenizer``).

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``…; ``dtype``: ``"auto"`` (bfloat16 on a GPU that supports it, else
    float32), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """

    def __init__(self, path: str | Path, device: str = "auto", dtype: str = "auto") -> None:
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = check_model_folder(path, f"transformers:{path}")
        if dtype not in DTYPES:
            raise InputError(f"transformers:{path}: dtype {dtype!r} is not one of {DTYPES}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            gpu_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
            dtype = "bfloat16" if gpu_bf16 else "float32"
        self.name = f"transformers:{folder}"
        self.device = device
        self.dtype = dtype
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as err:
            raise InputError(f"{self.name}: cannot load the model: {err}") from err
        self.model.to(device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._eos_ids = self._end_token_ids()
        self._stop_ids = self._eos_ids | {self.tokenizer.pad_token_id}
        self._lock = threading.Lock()

    def _end_token_ids(self) -> set[int]:
        """The generation config's EOS ids and the tokenizer's EOS."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        if not self.tokenizer.chat_template:
            raise InputError(f"{self.name}: the tokenizer has no chat template; use complete()")
        prompts = [
            self.tokenizer.apply_chat_template(
                [m.model_dump() for m in conv], tokenize=False, add_generation_prompt=True
            )
            for conv in conversations
        ]
        return self._generate(prompts, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self._generate(prompts, params)

    def _generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        import torch

        sampling = params.temperature > 0
        options = {
            "max_new_tokens": params.max_tokens,
            "do_sample": sampling,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self._eos_ids),
        }
        if sampling:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:  # greedy: unset the sampling knobs a generation_config.json may carry
            options.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            options.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        # The fast tokenizer is not thread-safe (padding state): it stays under the lock too.
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            # Chat templates already hold any special tokens; raw prompts are taken as given.
            batch = self.tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self.model.generate(**batch, **options)
            width = batch["input_ids"].shape[1]
            prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
            return [
                self._completion(row[width:].tolist(), int(n), params)
                for row, n in zip(output, prompt_lengths, strict=True)
            ]

    def _completion(self, new_ids: list[int], prompt_tokens: int, params: SamplingParams):
        # A finished row is padded: the first EOS or pad token ends the completion.
        end = next((i for i, t in enumerate(new_ids) if t in self._stop_ids), None)
        kept = new_ids if end is None else new_ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=None)
        if cut is not None:
            text = text[:cut]
        stopped = end is not None or cut is not None
        used = len(kept) + (1 if end is not None and new_ids[end] in self._eos_ids else 0)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=used,
            finish_reason="stop" if stopped else "length",
        )
