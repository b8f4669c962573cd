"""Build a language-model client from its configuration (:class:`LLMConfig`).

Backend specs::

    tiny                     the project's tiny model (built once into the user cache)
    smollm2, gemma3-270m     a pretrained model shipped in a package on the index,
                             converted once into the user cache (personaevo.llm.packaged)
    transformers:PATH        a local model folder, in-process (CPU or GPU)
    openai:URL               an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1
    vllm:PATH                vLLM's offline engine in-process (the vllm extra)
    replay:CASSETTE.jsonl    answers from a recorded cassette

``transformers:NAME`` and ``vllm:NAME`` with a packaged model's name (and no folder of
that name here) use its converted folder.

``record: FILE`` wraps the backend in a :class:`~personaevo.llm.cassette.RecordingLLM`.
A wrong spec or a missing folder or file is an :class:`InputError` raised before any
work starts; an unreachable server is not (its calls fail, see ``LLM.check``).
"""

from __future__ import annotations

from pathlib import Path

from personaevo.errors import InputError
from personaevo.llm.base import LLM
from personaevo.llm.config import LLMConfig
from personaevo.llm.packaged import PACKAGED_MODELS, is_packaged_model

__all__ = ["NAMED_MODELS", "SCHEMES", "build_llm", "parse_backend"]

#: Specs that are a model's name alone (no ``:argument``).
NAMED_MODELS = ("tiny", *PACKAGED_MODELS)
SCHEMES = (*NAMED_MODELS, "transformers", "openai", "vllm", "replay")


def parse_backend(spec: str) -> tuple[str, str]:
    """``"scheme:argument"`` (or a model's name alone: ``"tiny"``, ``"smollm2"``…) as
    ``(scheme, argument)``; a name alone has the argument ``""``."""
    scheme, sep, argument = spec.strip().partition(":")
    if scheme in NAMED_MODELS and not sep:
        return scheme, ""
    if scheme not in SCHEMES or scheme in NAMED_MODELS:
        raise InputError(
            f"LLM backend {spec!r}: unknown kind {scheme!r}; use "
            f"{', '.join(NAMED_MODELS)}, transformers:PATH, openai:URL, vllm:PATH or "
            "replay:FILE"
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
    elif is_packaged_model(scheme):
        from personaevo.llm.packaged import packaged_model_path
        from personaevo.llm.transformers_backend import TransformersLLM

        llm = TransformersLLM(packaged_model_path(scheme), **options)
    elif scheme == "transformers":
        from personaevo.llm.transformers_backend import TransformersLLM

        llm = TransformersLLM(_model_folder(argument), **options)
    elif scheme == "openai":
        from personaevo.llm.openai_backend import OpenAILLM

        llm = OpenAILLM(argument, config.model, **options)
    elif scheme == "vllm":
        from personaevo.llm.vllm_backend import VLLMLLM

        llm = VLLMLLM(_model_folder(argument), **options)
    else:
        from personaevo.llm.cassette import ReplayLLM

        llm = ReplayLLM(argument)
    if config.record:
        from personaevo.llm.cassette import RecordingLLM

        llm = RecordingLLM(llm, config.record)
    llm.default_params = config.sampling
    return llm


def _model_folder(argument: str) -> str | Path:
    """A backend's model argument: a packaged model's name (when no folder of that name
    exists) is its converted folder; anything else is a path, as given."""
    if is_packaged_model(argument) and not Path(argument).exists():
        from personaevo.llm.packaged import packaged_model_path

        return packaged_model_path(argument)
    return argument
