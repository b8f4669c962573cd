"""Which language model to use, as a run configuration names it (saved with runs)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from personaevo.llm.base import SamplingParams

DEFAULT_MODEL = "smollm2"
DEFAULT_MODEL_VARIABLE = "PERSONAEVO_DEFAULT_MODEL"


def default_model() -> str:
    """The model used wherever one is needed and none is named: ``smollm2`` (the packaged
    SmolLM2-135M-Instruct), or the spec in ``$PERSONAEVO_DEFAULT_MODEL`` (the test suite
    sets ``tiny`` there to stay fast)."""
    return os.environ.get(DEFAULT_MODEL_VARIABLE, "").strip() or DEFAULT_MODEL


class LLMConfig(BaseModel):
    """A backend and its sampling defaults.

    ``backend`` is one of:

    * ``"smollm2"`` (the default, see :func:`default_model`), ``"gemma3-270m"`` --
      pretrained models shipped in packages on the index, converted once into the user
      cache (:mod:`personaevo.llm.packaged`);
    * ``"tiny"`` -- the project's tiny model (built once into the user cache; for fast
      tests, not for evidence);
    * ``"transformers:PATH"`` -- any local model folder, in-process (CPU or GPU);
    * ``"openai:URL"`` -- an OpenAI-compatible HTTP endpoint such as ``vllm serve``
      (``http://127.0.0.1:8000/v1``), with ``model`` naming the served model;
    * ``"vllm:PATH"`` -- vLLM's offline engine in-process (the ``vllm`` extra);
    * ``"replay:CASSETTE.jsonl"`` -- answer every call from a recorded cassette.

    ``record`` names a cassette (JSONL) that every call is appended to.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        default_factory=default_model,
        description="smollm2 (default) | tiny | gemma3-270m | transformers:PATH | openai:URL | "
        "vllm:PATH | replay:FILE",
    )
    model: str | None = Field(None, description="Served model name (openai backend).")
    record: str | None = Field(None, description="Append every call to this JSONL cassette.")
    sampling: SamplingParams = Field(default_factory=SamplingParams)
