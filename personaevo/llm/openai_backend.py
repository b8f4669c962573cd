"""An OpenAI-compatible HTTP endpoint (``vllm serve``, ``personaevo llm serve``, a hosted
API) through the ``openai`` SDK.

A batch becomes concurrent requests (a thread pool of ``concurrency``), one per
conversation or prompt, answered in order. Seeds: request ``i`` of a call with ``seed=s``
is sent with ``seed = s + i`` (vLLM honours it; other servers may not), so repeating a call
repeats its answers and the requests of one call differ from each other.

Faults: connection errors, timeouts, HTTP 408/409/429 and 5xx are retried by the SDK with
exponential backoff (0.5 s · 2ⁿ, at most 8 s, with jitter) ``max_retries`` times; then
:class:`~personaevo.llm.base.LLMError` names the URL. When the server answers 404, the
served models (``GET /models``) are listed in the error. With ``model=None`` the server's
only model is used.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from personaevo.errors import InputError
from personaevo.llm.base import LLM, Completion, LLMError, Message, SamplingParams

__all__ = ["OpenAILLM"]


class OpenAILLM(LLM):
    """Client of ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) for ``model``.

    ``api_key`` defaults to ``$OPENAI_API_KEY``, else ``"EMPTY"`` (what a local ``vllm
    serve`` without ``--api-key`` accepts). ``timeout`` is seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        concurrency: int = 8,
        max_retries: int = 3,
    ) -> None:
        super().__init__()
        import openai

        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"openai:{base_url}: the URL must start with http:// or https://")
        if concurrency < 1:
            raise InputError(f"openai:{base_url}: concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=max_retries,
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="personaevo-openai")
        self._model_lock = threading.Lock()

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"openai:{self.base_url}" + (f" ({self.model})" if self.model else "")

    def served_models(self) -> list[str]:
        """The model names the server lists at ``GET /models``."""
        try:
            return sorted(m.id for m in self._client.models.list())
        except self._openai.OpenAIError as err:
            raise self._error(err) from err

    def check(self) -> None:
        """Reach the server and resolve the model now (else: at the first call)."""
        self._resolve_model()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _resolve_model(self) -> str:
        with self._model_lock:
            if self.model is None:
                served = self.served_models()
                if len(served) != 1:
                    raise LLMError(
                        f"{self.base_url}: name the model to use (--llm-model / llm.model); "
                        f"the server serves {served or 'no models'}"
                    )
                self.model = served[0]
            return self.model

    def _chat(self, conversations: list[list[Message]], params: SamplingParams):
        model = self._resolve_model()

        def one(i: int) -> Completion:
            response = self._client.chat.completions.create(
                model=model,
                messages=[m.model_dump() for m in conversations[i]],
                **self._options(params, i),
            )
            choice = response.choices[0]
            return self._completion(choice.message.content, choice.finish_reason, response)

        return self._map(one, len(conversations))

    def _complete(self, prompts: list[str], params: SamplingParams):
        model = self._resolve_model()

        def one(i: int) -> Completion:
            response = self._client.completions.create(
                model=model, prompt=prompts[i], **self._options(params, i)
            )
            choice = response.choices[0]
            return self._completion(choice.text, choice.finish_reason, response)

        return self._map(one, len(prompts))

    @staticmethod
    def _options(params: SamplingParams, i: int) -> dict:
        options: dict = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            options["stop"] = list(params.stop)
        if params.seed is not None:
            options["seed"] = params.seed + i
        return options

    @staticmethod
    def _completion(text: str | None, finish_reason: str | None, response) -> Completion:
        usage = response.usage
        return Completion(
            text=text or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="length" if finish_reason == "length" else "stop",
        )

    def _map(self, one, count: int) -> list[Completion]:
        try:
            return list(self._pool.map(one, range(count)))
        except self._openai.OpenAIError as err:
            raise self._error(err) from err

    def _error(self, err: Exception) -> LLMError:
        openai = self._openai
        if isinstance(err, openai.APIConnectionError):
            return LLMError(
                f"{self.base_url}: cannot reach the server ({err}) after {self.max_retries} "
                "retries; is it running (e.g. `vllm serve MODEL`) and is the URL right?"
            )
        if isinstance(err, openai.NotFoundError):
            try:
                served = sorted(m.id for m in self._client.models.list())
            except openai.OpenAIError:
                served = None
            if served is not None and self.model not in served:
                return LLMError(
                    f"{self.base_url}: the server has no model {self.model!r}; "
                    f"it serves {served or 'no models'}"
                )
            return LLMError(f"{self.base_url}: not found ({err}); does the URL end in /v1?")
        if isinstance(err, openai.AuthenticationError):
            return LLMError(f"{self.base_url}: authentication failed ({err}); set the API key")
        if isinstance(err, openai.APIStatusError):
            return LLMError(f"{self.base_url}: HTTP {err.status_code}: {err.message}")
        return LLMError(f"{self.base_url}: {type(err).__name__}: {err}")
