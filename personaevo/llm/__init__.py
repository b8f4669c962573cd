"""Language models in personaevo: one interface (:mod:`personaevo.llm.base`), its backends,
recording and replay, and the tiny model the project trains for CPU machines."""

from personaevo.llm.base import (
    LLM,
    Completion,
    Conversation,
    Message,
    ProgramLLM,
    SamplingParams,
    ScriptedLLM,
    Usage,
)

__all__ = [
    "LLM",
    "Completion",
    "Conversation",
    "Message",
    "ProgramLLM",
    "SamplingParams",
    "ScriptedLLM",
    "Usage",
]
