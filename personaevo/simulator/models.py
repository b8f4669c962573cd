"""Opening the models a simulator, agent or judge runs on, from a command-line spec.

* ``tiny``: the project's tiny model (built into the user cache on first use);
* ``smollm2``, ``gemma3-270m``: a pretrained model shipped in a package, converted into
  the user cache on first use (:mod:`personaevo.llm.packaged`), then loaded as a folder;
* a local model folder, or ``transformers:PATH``: loaded in this process
  (:class:`~personaevo.simulator.policy.PolicyLLM`, the same generation code training uses
  for its rollouts, on the GPU when there is one);
* any other backend spec (``openai:URL``, ``vllm:PATH``, ``replay:FILE``): through
  :func:`personaevo.llm.factory.build_llm`.

A spec that names nothing usable is an :class:`~personaevo.errors.InputError`.
"""

from __future__ import annotations

from pathlib import Path

from personaevo.errors import InputError
from personaevo.llm import LLM, SamplingParams
from personaevo.llm.packaged import is_packaged_model, packaged_model_folder
from personaevo.simulator.agents import Agent, LLMAgent, ScriptedAgent
from personaevo.simulator.judges import Judge, LLMJudge, RuleJudge

REMOTE_PREFIXES = ("openai:", "vllm:", "replay:")


def check_model_spec(spec: str) -> None:
    """Raise :class:`InputError` when a spec cannot name a model (nothing is loaded)."""
    if spec == "tiny" or spec.startswith(REMOTE_PREFIXES):
        return
    if is_packaged_model(spec) and not Path(spec).exists():
        packaged_model_folder(spec)  # its package is installed (else: the pip command)
        return
    path = Path(spec.removeprefix("transformers:")).expanduser()
    if not path.exists():
        raise InputError(f"--model {spec}: no such model folder")
    if not (path / "config.json").is_file():
        raise InputError(f"--model {spec}: not a model folder (no config.json)")


def open_model(spec: str, model_name: str | None = None) -> LLM:
    """An :class:`LLM` for ``spec`` (see the module docstring)."""
    check_model_spec(spec)
    from personaevo.simulator.policy import PolicyLLM

    if spec == "tiny":
        from personaevo.llm.tiny import tiny_model_path

        llm = PolicyLLM.from_pretrained(tiny_model_path())
        llm.name = "tiny"
        return llm
    if is_packaged_model(spec) and not Path(spec).exists():
        from personaevo.llm.packaged import packaged_model_path

        llm = PolicyLLM.from_pretrained(packaged_model_path(spec))
        llm.name = spec
        return llm
    if spec.startswith(REMOTE_PREFIXES):
        try:
            from personaevo.llm.config import LLMConfig
            from personaevo.llm.factory import build_llm
        except ImportError as err:  # pragma: no cover - the factory ships with personaevo.llm
            raise InputError(f"--model {spec}: this backend needs personaevo.llm.factory") from err
        return build_llm(LLMConfig(backend=spec, model=model_name))
    llm = PolicyLLM.from_pretrained(spec.removeprefix("transformers:"))
    llm.name = spec
    return llm


def open_agent(spec: str, refusal: float = 0.0) -> Agent:
    """``scripted`` or a model spec for :class:`LLMAgent`."""
    if spec == "scripted":
        return ScriptedAgent(refusal)
    return LLMAgent(open_model(spec), SamplingParams(max_tokens=96, temperature=0.7))


def open_judge(spec: str) -> Judge:
    """``rules`` or a model spec for :class:`LLMJudge`."""
    return RuleJudge() if spec == "rules" else LLMJudge(open_model(spec))
