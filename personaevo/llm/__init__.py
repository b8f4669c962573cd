"""Language models in personaevo: one interface (:mod:`personaevo.llm.base`), its backends,
recording and replay, and the tiny model the project trains for CPU machines.

``build_llm(LLMConfig(backend="tiny" | "smollm2" | "gemma3-270m" | "transformers:PATH" |
"openai:URL" | "vllm:PATH" | "replay:FILE", model=..., record=...))`` makes a client
(:mod:`personaevo.llm.factory`); :func:`packaged_model_path` gives a packaged model's
converted folder (:mod:`personaevo.llm.packaged`).
Backends import their engines (torch, openai, vllm) only when built.
"""

from personaevo.llm.base import (
    LLM,
    Completion,
    Conversation,
    LLMError,
    Message,
    ProgramLLM,
    SamplingParams,
    ScriptedLLM,
    Usage,
)
from personaevo.llm.cassette import RecordingLLM, ReplayLLM
from personaevo.llm.config import DEFAULT_MODEL, LLMConfig, default_model
from personaevo.llm.factory import build_llm
from personaevo.llm.openai_backend import OpenAILLM
from personaevo.llm.packaged import PACKAGED_MODELS, packaged_model_path
from personaevo.llm.tiny import build_tiny_model, tiny_model_path
from personaevo.llm.transformers_backend import TransformersLLM
from personaevo.llm.vllm_backend import VLLMLLM

__all__ = [
    "DEFAULT_MODEL",
    "LLM",
    "PACKAGED_MODELS",
    "VLLMLLM",
    "Completion",
    "Conversation",
    "LLMConfig",
    "LLMError",
    "Message",
    "OpenAILLM",
    "ProgramLLM",
    "RecordingLLM",
    "ReplayLLM",
    "SamplingParams",
    "ScriptedLLM",
    "TransformersLLM",
    "Usage",
    "build_llm",
    "build_tiny_model",
    "default_model",
    "packaged_model_path",
    "tiny_model_path",
]
