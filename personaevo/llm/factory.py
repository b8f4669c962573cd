"""Build a language-model client from its configuration (:class:`LLMConfig`).

Backend specs::

    tiny                     the project's tiny model (built once into the user cache)
    transformers:PATH        a local model folder, in-process (CPU or GPU)
    openai:URL               an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    vllm:PATH                vLLM's offline engine in-process (the vllm extra)
    replay:CASSETTE.jsonl    answers from a recorded cassette

``record: FILE`` wraps the backend in a :class:`~personaevo.llm.cassette.RecordingLLM`.
A wrong spec or a missing folder or file is an :class:`InputError` raised before any
work starts; an unreachable server is not (its calls fail, see ``LLM.check``).
"""

from __future__ import annotations

from personaevo.errors import InputError
from personaevo.llm.base import LLM
from personaevo.llm.config import LLMConfig

__all__ = ["SCHEMES", "build_llm", "parse_backend"]

SCHEMES = ("tiny", "transformers", "openai", "vllm", "replay")


def parse_backend(spec: str) -> tuple[str, str]:
    """``"scheme:argument"`` (or ``"tiny"``) as ``(scheme, argument)``."""
    scheme, sep, argument = spec.strip().partition(":")
    if scheme == "tiny" and not argument:
        return "tiny", ""
    if scheme not in SCHEMES or scheme == "tiny":
        raise InputError(
            f"LLM backend {spec!r}: unknown kind {scheme!r}; use tiny, transformers:PATH, "
            "openai:URL, vllm:PATH or replay:FILE"
        )
    if not sep or not argument.strip():
        raise InputError(f"LLM backend {spec!r}: {scheme}: needs a {_WANTS[scheme]} after ':'")
    return scheme, argument.strip()


_WANTS = {
    "transformers": "model folder",
    "openai": "URL",
    "vllm": "model folder",
    "replay": "cassette file",
}


def build_llm(config: LLMConfig | str, **options) -> LLM:
    """The client ``config`` names. ``options`` go to the backend's constructor
    (``device``/``dtype`` for transformers, ``timeout``/``concurrency``/``api_key`` for
    openai, engine keywords for vLLM)."""
    if isinstance(config, str):
        config = LLMConfig(backend=config)
    scheme, argument = parse_backend(config.backend)
    if config.model and scheme not in ("openai", "replay"):
        raise InputError(
            f"LLM backend {config.backend!r}: model {config.model!r} names a served model; "
            "only openai:URL backends take one"
        )
    if scheme == "tiny":
        from personaevo.llm.tiny import tiny_model_path
        from personaevo.llm.transformers_backend import TransformersLLM

        llm: LLM = TransformersLLM(tiny_model_path(), **options)
    elif scheme == "transformers":
        from personaevo.llm.transformers_backend import TransformersLLM

        llm = TransformersLLM(argument, **options)
    elif scheme == "openai":
        from personaevo.llm.openai_backend import OpenAILLM

        llm = OpenAILLM(argument, config.model, **options)
    elif scheme == "vllm":
        from personaevo.llm.vllm_backend import VLLMLLM

        llm = VLLMLLM(argument, **options)
    else:
        from personaevo.llm.cassette import ReplayLLM

        llm = ReplayLLM(argument)
    if config.record:
        from personaevo.llm.cassette import RecordingLLM

        llm = RecordingLLM(llm, config.record)
    llm.default_params = config.sampling
    return llm
