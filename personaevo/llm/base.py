"""One language-model interface for every backend: batched chat and completion.

A backend subclasses :class:`LLM` and implements :meth:`LLM._chat` and
:meth:`LLM._complete`; the public :meth:`LLM.chat` and :meth:`LLM.complete` add the
accounting (:class:`Usage`: calls, prompt and completion tokens, seconds) that progress
displays show and runs save. Requests are *batches*: a list of conversations or prompts in,
one :class:`Completion` per item out, in order.

Generator programs never see an :class:`LLM`: in the sandbox they get a proxy to a
:class:`ProgramLLM`, whose methods take and return plain JSON values.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LLM",
    "Completion",
    "Conversation",
    "LLMError",
    "Message",
    "ProgramLLM",
    "SamplingParams",
    "ScriptedLLM",
    "Usage",
]


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


Conversation = Sequence[Message]


class SamplingParams(BaseModel):
    """How to sample. ``seed`` makes a request repeatable where the engine allows it
    (transformers and vLLM do; an HTTP server may ignore it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1, description="New tokens at most.")
    temperature: float = Field(0.7, ge=0, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: tuple[str, ...] = Field((), description="Strings that end a completion (not kept).")
    seed: int | None = None


class Completion(BaseModel):
    """One generated reply and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: Literal["stop", "length"] = "stop"


class LLMError(RuntimeError):
    """A backend could not answer (unreachable server, unknown model, engine failure, a
    request missing from a replay cassette). The message names the backend or file."""


class Usage(BaseModel):
    """Running totals of a client's calls (one batch is one call). ``failed_calls`` counts
    calls that raised; their requests and tokens are not counted. Read a consistent copy with
    :meth:`LLM.usage_snapshot`; ``later - earlier`` is the usage in between."""

    calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failed_calls: int = 0

    def add(self, completions: Sequence[Completion], seconds: float) -> None:
        self.calls += 1
        self.requests += len(completions)
        self.prompt_tokens += sum(c.prompt_tokens for c in completions)
        self.completion_tokens += sum(c.completion_tokens for c in completions)
        self.seconds += seconds

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            **{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields}
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            **{name: getattr(self, name) - getattr(other, name) for name in Usage.model_fields}
        )


class LLM(ABC):
    """A language-model client. Subclasses implement ``_chat`` and ``_complete``.

    ``name`` says what it is (``"transformers:/models/tiny"``, ``"openai:http://…"``); it
    is recorded with runs and cassettes. ``default_params`` are used by calls that pass no
    :class:`SamplingParams` (``build_llm`` sets them from the configuration's ``sampling``).
    """

    name: str = "llm"

    def __init__(self) -> None:
        self.usage = Usage()
        self.default_params = SamplingParams()
        self._usage_lock = threading.Lock()

    def usage_snapshot(self) -> Usage:
        """A copy of :attr:`usage` taken under its lock (safe while other threads call)."""
        with self._usage_lock:
            return self.usage.model_copy()

    def chat(
        self, conversations: Sequence[Conversation], params: SamplingParams | None = None
    ) -> list[Completion]:
        """One reply per conversation (each a list of :class:`Message`)."""
        conversations = [[_as_message(m) for m in conv] for conv in conversations]
        return self._accounted(self._chat, conversations, params or self.default_params)

    def complete(
        self, prompts: Sequence[str], params: SamplingParams | None = None
    ) -> list[Completion]:
        """One continuation per raw prompt (no chat template)."""
        return self._accounted(self._complete, list(prompts), params or self.default_params)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, servers or connections; the default has none."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`LLMError` now if the backend cannot answer (a server that is down,
        an unknown model); the default has nothing to check."""

    @abstractmethod
    def _chat(
        self, conversations: list[list[Message]], params: SamplingParams
    ) -> list[Completion]: ...

    @abstractmethod
    def _complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]: ...

    def _accounted(self, method, items, params: SamplingParams) -> list[Completion]:
        if not items:
            return []
        start = time.perf_counter()
        try:
            completions = method(items, params)
        except BaseException:
            with self._usage_lock:
                self.usage.failed_calls += 1
            raise
        if len(completions) != len(items):
            raise RuntimeError(
                f"{self.name}: {len(items)} requests gave {len(completions)} completions"
            )
        with self._usage_lock:
            self.usage.add(completions, time.perf_counter() - start)
        return completions


def _as_message(message: Message | dict) -> Message:
    return message if isinstance(message, Message) else Message.model_validate(message)


class ScriptedLLM(LLM):
    """A deterministic stand-in for tests and examples: ``reply(text_of_last_user_turn)``.

    Token counts are whitespace word counts.
    """

    def __init__(self, reply: Callable[[str], str], name: str = "scripted") -> None:
        super().__init__()
        self._reply = reply
        self.name = name

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        return [
            self._one(conv[-1].content, " ".join(m.content for m in conv)) for conv in conversations
        ]

    def _complete(self, prompts: list[str], params: SamplingParams):
        return [self._one(prompt, prompt) for prompt in prompts]

    def _one(self, last: str, whole: str) -> Completion:
        text = self._reply(last)
        return Completion(
            text=text, prompt_tokens=len(whole.split()), completion_tokens=len(text.split())
        )


class ProgramLLM:
    """The language model as a generator program sees it (through the sandbox proxy).

    Arguments and results are JSON values: messages are ``{"role", "content"}`` dicts, replies
    are strings. Sampling keywords override the run's defaults for one call::

        text = llm.chat([{"role": "user", "content": "Describe …"}], max_tokens=120)
        texts = llm.chat_batch([[...], [...]], temperature=0.9)
    """

    def __init__(self, llm: LLM, defaults: SamplingParams | None = None) -> None:
        self._llm = llm
        self._defaults = defaults or SamplingParams()

    def _params(self, overrides: dict) -> SamplingParams:
        allowed = {"max_tokens", "temperature", "top_p", "stop", "seed"}
        unknown = set(overrides) - allowed
        if unknown:
            raise TypeError(f"unknown sampling options {sorted(unknown)}; use {sorted(allowed)}")
        if "stop" in overrides:
            overrides["stop"] = tuple(overrides["stop"] or ())
        return SamplingParams.model_validate({**self._defaults.model_dump(), **overrides})

    def chat(self, messages: list[dict], **sampling) -> str:
        return self.chat_batch([messages], **sampling)[0]

    def chat_batch(self, conversations: list[list[dict]], **sampling) -> list[str]:
        return [c.text for c in self._llm.chat(conversations, self._params(sampling))]

    def complete(self, prompt: str, **sampling) -> str:
        return self.complete_batch([prompt], **sampling)[0]

    def complete_batch(self, prompts: list[str], **sampling) -> list[str]:
        return [c.text for c in self._llm.complete(prompts, self._params(sampling))]
