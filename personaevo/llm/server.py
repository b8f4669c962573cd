"""Serve any :class:`~personaevo.llm.base.LLM` over the OpenAI HTTP API (``personaevo llm
serve``), so several processes (Ray workers, another machine) share one loaded model.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``
(non-streaming, one choice per prompt; ``prompt`` may be a list). Request fields used:
``model`` (must be the served name), ``messages``/``prompt``, ``max_tokens`` (or
``max_completion_tokens``), ``temperature``, ``top_p``, ``stop``, ``seed``; fields left out
take the backend's defaults. Errors come back as ``{"error": {"message", "type",
"code"}}`` with status 400 (bad request), 404 (unknown model or path) or 500 (the backend
failed). Each HTTP request runs in its own thread; the backend serializes generation.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from personaevo.llm.base import LLM, Completion, Message, SamplingParams

__all__ = ["OpenAIServer", "RequestError"]

MAX_BODY = 16 * 1024 * 1024


class RequestError(Exception):
    """A request the server refuses: the HTTP status and the message sent back."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class OpenAIServer:
    """``llm`` served as ``model_name`` on ``host:port`` (port 0 picks a free one).

    Use :meth:`start` (a background thread) and :meth:`stop`, or :meth:`serve_forever`.
    """

    def __init__(
        self, llm: LLM, model_name: str, host: str = "127.0.0.1", port: int = 8000
    ) -> None:
        self.llm = llm
        self.model_name = model_name
        self.created = int(time.time())
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, ending in ``/v1``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- request handling ---------------------------------------------------------------

    def models(self) -> dict:
        entry = {"id": self.model_name, "object": "model", "created": self.created}
        return {"object": "list", "data": [{**entry, "owned_by": "personaevo"}]}

    def complete(self, path: str, body: dict) -> dict:
        if body.get("stream"):
            raise RequestError(HTTPStatus.BAD_REQUEST, "stream=true is not supported")
        if body.get("n", 1) != 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, "only n=1 is supported")
        if body.get("model") != self.model_name:
            raise RequestError(
                HTTPStatus.NOT_FOUND,
                f"The model `{body.get('model')}` does not exist; served: {self.model_name}",
            )
        params = self._params(body)
        if path == "/v1/chat/completions":
            try:
                conversation = [Message.model_validate(m) for m in body.get("messages") or []]
            except ValidationError as err:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"messages: {err}") from err
            if not conversation:
                raise RequestError(HTTPStatus.BAD_REQUEST, "messages: must not be empty")
            done = self.llm.chat([conversation], params)
            choices = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done[0].text},
                    "finish_reason": done[0].finish_reason,
                }
            ]
            return self._response("chat.completion", choices, done)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise RequestError(HTTPStatus.BAD_REQUEST, "prompt: must be a string or strings")
        done = self.llm.complete(prompts, params)
        choices = [
            {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
            for i, c in enumerate(done)
        ]
        return self._response("text_completion", choices, done)

    def _params(self, body: dict) -> SamplingParams:
        fields: dict[str, Any] = self.llm.default_params.model_dump()
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        given = {
            "max_tokens": max_tokens,
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "seed": body.get("seed"),
        }
        fields.update({k: v for k, v in given.items() if v is not None})
        stop = body.get("stop")
        if stop is not None:
            fields["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        try:
            return SamplingParams.model_validate(fields)
        except ValidationError as err:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"sampling parameters: {err}") from err

    def _response(self, kind: str, choices: list, done: list[Completion]) -> dict:
        prompt = sum(c.prompt_tokens for c in done)
        completion = sum(c.completion_tokens for c in done)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    app: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(HTTPStatus.OK, self.app.models())
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}")

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError as err:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {err}") from err
            if not isinstance(body, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
            self._send(HTTPStatus.OK, self.app.complete(path, body))
        except RequestError as err:
            self._error(err.status, str(err))
        except Exception as err:  # the backend failed: tell the client, keep serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}")

    def _error(self, status: HTTPStatus, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": status.value}})

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
