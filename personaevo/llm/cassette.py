"""Record every language-model request to a JSONL *cassette* and replay it deterministically.

One line per request (a batch of ``k`` requests writes ``k`` lines, in order)::

    {"key": "3f…", "kind": "chat", "input": [{"role": "user", "content": "…"}],
     "params": {"max_tokens": 256, "temperature": 0.7, …}, "backend": "transformers:/m",
     "completion": {"text": "…", "prompt_tokens": 31, "completion_tokens": 12,
                    "finish_reason": "stop"}}

``key`` = SHA-256 of the canonical JSON of ``[kind, input, params]`` (:func:`request_key`).
:class:`ReplayLLM` answers a request from the lines with its key, in recorded order: the
``j``-th identical request gets the ``j``-th recorded completion, so a run that repeats
its calls replays exactly. A request that is not in the cassette (or asked more often than
recorded) raises :class:`~personaevo.llm.base.LLMError` naming it. Replay reports the
recorded token counts; its seconds are the lookup time.

Recording appends each batch with one ``write`` under an exclusive ``flock``, so several
processes (Ray workers) can record into one cassette without interleaving lines.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from collections import Counter, defaultdict, deque
from pathlib import Path

from personaevo.errors import FileFieldError, InputError
from personaevo.llm.base import LLM, Completion, LLMError, Message, SamplingParams

__all__ = ["RecordingLLM", "ReplayLLM", "request_key"]


def _input(kind: str, item: list[Message] | str) -> list[dict] | str:
    return [m.model_dump() for m in item] if kind == "chat" else item


def request_key(kind: str, item: list[dict] | str, params: SamplingParams) -> str:
    """SHA-256 hex of ``[kind, input, params]`` as canonical JSON."""
    payload = [kind, item, params.model_dump(mode="json")]
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RecordingLLM(LLM):
    """Wraps ``inner``: answers come from it, and every request is appended to ``path``."""

    def __init__(self, inner: LLM, path: str | Path) -> None:
        super().__init__()
        self.inner = inner
        self.path = Path(path).expanduser()
        self.default_params = inner.default_params
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        completions = self.inner.chat(conversations, params)
        self._record("chat", conversations, params, completions)
        return completions

    def _complete(self, prompts: list[str], params: SamplingParams):
        completions = self.inner.complete(prompts, params)
        self._record("complete", prompts, params, completions)
        return completions

    def _record(self, kind: str, items: list, params: SamplingParams, completions) -> None:
        lines = []
        for item, completion in zip(items, completions, strict=True):
            data = _input(kind, item)
            line = {
                "key": request_key(kind, data, params),
                "kind": kind,
                "input": data,
                "params": params.model_dump(mode="json"),
                "backend": self.inner.name,
                "completion": completion.model_dump(),
            }
            lines.append(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
        blob = "".join(lines).encode()
        with self._lock, open(self.path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.write(blob)
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()


class ReplayLLM(LLM):
    """Answers every request from the cassette at ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.name = f"replay:{self.path}"
        if not self.path.is_file():
            raise InputError(f"replay:{path}: no such cassette file")
        self._answers: dict[str, deque[Completion]] = defaultdict(deque)
        self.backends: set[str] = set()
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                completion = Completion.model_validate(record["completion"])
                self._answers[str(record["key"])].append(completion)
                self.backends.add(str(record.get("backend", "")))
            except (ValueError, KeyError, TypeError) as err:
                reason = f"not a cassette entry: {err}"
                raise FileFieldError(self.path, f"line {number}", reason) from err
        self.recorded = sum(len(q) for q in self._answers.values())
        self._lock = threading.Lock()

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        return self._replay("chat", conversations, params)

    def _complete(self, prompts: list[str], params: SamplingParams):
        return self._replay("complete", prompts, params)

    def _replay(self, kind: str, items: list, params: SamplingParams) -> list[Completion]:
        keyed = [(request_key(kind, _input(kind, item), params), item) for item in items]
        with self._lock:
            wanted = Counter(key for key, _ in keyed)
            short = {key for key, n in wanted.items() if len(self._answers.get(key, ())) < n}
            missing = [(key, item) for key, item in keyed if key in short]
            if missing:
                key, item = missing[0]
                raise LLMError(
                    f"{self.path}: no recorded answer for this {kind} request (key {key[:12]}, "
                    f"{len(missing)} of {len(items)} in the batch missing, or asked more often "
                    f"than recorded): {_preview(kind, item)} with {params.model_dump()}"
                )
            return [self._answers[key].popleft() for key, _ in keyed]


def _preview(kind: str, item, limit: int = 200) -> str:
    text = json.dumps(_input(kind, item), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"
