"""Which language model to use, as a run configuration names it (saved with runs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from personaevo.llm.base import SamplingParams


class LLMConfig(BaseModel):
    """A backend and its sampling defaults.

    ``backend`` is one of:

    * ``"tiny"`` -- the project's tiny model (built once into the user cache; CPU default);
    * ``"smollm2"``, ``"gemma3-270m"`` -- pretrained models shipped in packages on the
      index, converted once into the user cache (:mod:`personaevo.llm.packaged`);
    * ``"transformers:PATH"`` -- any local model folder, in-process (CPU or GPU);
    * ``"openai:URL"`` -- an OpenAI-compatible HTTP endpoint such as ``vllm serve``
      (``http://127.0.0.1:8000/v1``), with ``model`` naming the served model;
    * ``"vllm:PATH"`` -- vLLM's offline engine in-process (the ``vllm`` extra);
    * ``"replay:CASSETTE.jsonl"`` -- answer every call from a recorded cassette.

    ``record`` names a cassette (JSONL) that every call is appended to.
    """

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(
        "tiny",
        description="tiny | smollm2 | gemma3-270m | transformers:PATH | openai:URL | "
        "vllm:PATH | replay:FILE",
    )
    model: str | None = Field(None, description="Served model name (openai backend).")
    record: str | None = Field(None, description="Append every call to this JSONL cassette.")
    sampling: SamplingParams = Field(default_factory=SamplingParams)
