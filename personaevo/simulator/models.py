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

An agent spec may also be written ``llm:SPEC`` (the model ``SPEC`` as :class:`LLMAgent`).
:func:`model_family` tells whether two specs are the same network: a held-out judge must
not be the policy, nor the model the policy was trained from.
"""

from __future__ import annotations

import json
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
    """``scripted`` or a model spec (``llm:SPEC`` too) for :class:`LLMAgent`."""
    if spec == "scripted":
        return ScriptedAgent(refusal)
    llm = open_model(spec.removeprefix("llm:"))
    return LLMAgent(llm, SamplingParams(max_tokens=96, temperature=0.7))


FAMILY_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def _folder(spec: str) -> Path | None:
    if spec == "tiny":
        from personaevo.llm.tiny import tiny_model_path

        return tiny_model_path()
    if is_packaged_model(spec) and not Path(spec).exists():
        from personaevo.llm.packaged import packaged_model_path

        return packaged_model_path(spec)  # converted on first use, as opening it would
    if spec.startswith(REMOTE_PREFIXES):
        return None
    return Path(spec.removeprefix("transformers:")).expanduser()


def model_family(spec: str) -> str:
    """What identifies the network behind a spec: its folder's ``config.json`` values of
    :data:`FAMILY_KEYS` (so a model trained from SmolLM2 is SmolLM2's family), else the
    spec itself (a remote backend)."""
    spec = spec.removeprefix("llm:")
    folder = _folder(spec)
    config = folder / "config.json" if folder is not None else None
    if config is None or not config.is_file():
        return spec
    data = json.loads(config.read_text(encoding="utf-8"))
    data = data.get("text_config", data) if "hidden_size" not in data else data
    return "/".join(f"{k}={data.get(k)}" for k in FAMILY_KEYS)


def check_heldout_judge(judge: str, models: list[str]) -> None:
    """Refuse (:class:`InputError`) a held-out judge of the same family as a scored model:
    a policy grading itself is no independent measure."""
    if judge == "rules":
        return
    family = model_family(judge)
    same = [m for m in models if model_family(m) == family]
    if same:
        raise InputError(
            f"--heldout-judge {judge}: the same model as the simulator {same[0]} "
            f"({family}); a held-out judge must be a different model (e.g. gemma3-270m for "
            "a SmolLM2 policy)"
        )


def open_judge(spec: str) -> Judge:
    """``rules`` or a model spec for :class:`LLMJudge`."""
    return RuleJudge() if spec == "rules" else LLMJudge(open_model(spec))
