"""The tiny model: a ~0.7M-parameter chat model the project trains from scratch in under two
minutes on two CPU cores, so that everything that needs a language model runs anywhere.
It learns the corpus's formats, not much more (``experiments/bench_tiny_model.py``).

Recipe (:class:`TinyRecipe`, all seeded):

1. a corpus of chat conversations from :mod:`personaevo.llm.corpus`, each section's share
   its registered weight unless ``section_weights`` replaces it (the default gives Likert
   0.75 instead of 2: its one-digit replies are learned from fewer examples, and the
   tokens go to the simulator turns and descriptions);
2. a byte-level BPE tokenizer (the ``tokenizers`` library) trained on it, with the ChatML
   chat template (``<|im_start|>role\\n…<|im_end|>``), left padding, ``<|im_end|>`` as EOS;
3. a ``Qwen2ForCausalLM`` (an architecture vLLM serves) of ``hidden`` width, ``layers``
   layers and head size 64, trained with AdamW (linear warm-up, cosine decay to 10 %) on
   right-padded batches of whole conversations (similar lengths grouped); the loss is
   next-token cross-entropy with weight 1 on assistant tokens and ``prompt_loss_weight``
   on the others (:func:`_weighted_loss`);
4. ``save_pretrained`` of model, tokenizer and a ``generation_config.json``, plus
   ``personaevo_tiny.json`` (:class:`TinyBuildReport`: the recipe, losses, seconds).

:func:`tiny_model_path` returns a cached build: ``$PERSONAEVO_TINY_MODEL`` when set (a
folder), else ``$PERSONAEVO_CACHE`` (default ``~/.cache/personaevo``) ``/tiny-model-V-KEY``
where KEY hashes the recipe and the corpus sections, built on first use under a file lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from personaevo.errors import InputError

__all__ = [
    "TINY_MODEL_VERSION",
    "TinyBuildReport",
    "TinyRecipe",
    "build_tiny_model",
    "portable_tokenizer_class",
    "tiny_model_path",
]

TINY_MODEL_VERSION = "2"
REPORT_FILE = "personaevo_tiny.json"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TinyRecipe(BaseModel):
    """Everything that determines a tiny-model build."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    conversations: int = Field(2900, ge=100, description="Corpus size.")
    steps: int = Field(362, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Conversations per step.")
    lr: float = Field(5e-3, gt=0, description="Peak AdamW learning rate.")
    warmup: int = Field(20, ge=0, description="Linear warm-up steps.")
    vocab_size: int = Field(2048, ge=512, description="BPE vocabulary (rounded up to x64).")
    hidden: int = Field(128, ge=64, description="Model width (a multiple of 64).")
    layers: int = Field(2, ge=1)
    intermediate: int = Field(384, ge=64, description="MLP width.")
    max_positions: int = Field(1024, ge=1024)
    prompt_loss_weight: float = Field(
        0.3, ge=0, le=1, description="Loss weight of non-assistant tokens (assistant: 1)."
    )
    section_weights: dict[str, float] = Field(
        default_factory=lambda: {"likert": 0.75},
        description="Corpus share of named sections, replacing their registered weight "
        "(a section draws round(conversations · w / Σ w) conversations).",
    )


class TinyBuildReport(BaseModel):
    """What a build made and how training went (saved as ``personaevo_tiny.json``)."""

    version: str = TINY_MODEL_VERSION
    recipe: TinyRecipe
    corpus_fingerprint: str
    sections: dict[str, float]
    parameters: int
    vocab_size: int
    tokens_trained: int
    loss_first: float = Field(description="Mean loss of the first 10 steps (nats/token).")
    loss_last: float = Field(description="Mean loss of the last 10 steps (nats/token).")
    seconds: float


def recipe_key(recipe: TinyRecipe) -> str:
    """Cache key: the recipe, the version and :func:`corpus_fingerprint` of the sections."""
    from personaevo.llm.corpus import corpus_fingerprint

    payload = json.dumps(
        [TINY_MODEL_VERSION, recipe.model_dump(), corpus_fingerprint()], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()


BUILD_SECONDS_2_CORES = 100
"""What a default build usually takes on 2 CPU cores (95 to 105 s measured), for the
first-use message."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def tiny_model_path(
    recipe: TinyRecipe | None = None, log: Callable[[str], None] | None = None
) -> Path:
    """The tiny model's folder, building it into the user cache on first use. A build
    says so on ``log`` (default: stderr) before it starts, with how long it usually takes,
    then every 50 training steps and when it is done, so a first ``--llm tiny`` never
    looks hung."""
    env = os.environ.get("PERSONAEVO_TINY_MODEL")
    if env:
        path = Path(env).expanduser()
        if not is_model_folder(path):
            raise InputError(
                f"PERSONAEVO_TINY_MODEL={env}: not a model folder (no config.json and "
                f"tokenizer_config.json); build one with `personaevo tiny-model build --out {env}`"
                " or unset the variable"
            )
        return path
    from filelock import FileLock

    recipe = recipe or TinyRecipe()
    root = Path(os.environ.get("PERSONAEVO_CACHE") or Path.home() / ".cache" / "personaevo")
    target = root.expanduser() / f"tiny-model-{TINY_MODEL_VERSION}-{recipe_key(recipe)}"
    if is_model_folder(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say = log or _say
    with FileLock(f"{target}.lock"):
        if not is_model_folder(target):  # another process may have built it while we waited
            say(
                f"building the tiny model into {target} (first use only; usually about "
                f"{BUILD_SECONDS_2_CORES} s on 2 CPU cores, longer on a busy machine)"
            )

            def progress(step: int, steps: int, loss: float) -> None:
                if step % 50 == 0 or step == steps:
                    say(f"  tiny model: step {step}/{steps}, loss {loss:.3f}")

            report = build_tiny_model(target, recipe, progress=progress)
            say(f"tiny model built in {report.seconds:.0f} s: {target}")
    return target


def build_tokenizer(texts: list[str], vocab_size: int, max_positions: int):
    """A byte-level BPE tokenizer trained on ``texts``, wrapped for ``save_pretrained``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    # padding_side must be given to the constructor: setting it afterwards is not saved.
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_positions,
        clean_up_tokenization_spaces=False,
    )


def encode_conversation(tokenizer, conversation) -> tuple[list[int], list[int]]:
    """Token ids of a conversation in the chat template, and its labels: the assistant turns'
    content and closing ``<|im_end|>`` are learned, everything else is masked (-100).

    The template is a concatenation of per-message segments that begin and end at special
    tokens, so encoding the segments one by one gives the same ids as encoding the whole."""
    return encode_conversations(tokenizer, [conversation])[0]


def encode_conversations(tokenizer, conversations) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_conversation` of each conversation, with every segment of every
    conversation encoded in one batched call (the Rust tokenizer's threads; one call per
    segment took 8 s for the version-1 corpus of 6,000 conversations, this 4.5 s)."""
    segments: list[str] = []
    for conversation in conversations:
        for message in conversation:
            segments += [f"<|im_start|>{message.role}\n", f"{message.content}<|im_end|>\n"]
    encoded = iter(tokenizer(segments, add_special_tokens=False)["input_ids"] if segments else [])
    rows: list[tuple[list[int], list[int]]] = []
    for conversation in conversations:
        ids: list[int] = []
        labels: list[int] = []
        for message in conversation:
            head, body = next(encoded), next(encoded)
            ids += head + body
            learned = message.role == "assistant"
            labels += [-100] * len(head) + ([*body[:-1], -100] if learned else [-100] * len(body))
        rows.append((ids, labels))
    return rows


def build_tiny_model(
    out: str | Path,
    recipe: TinyRecipe | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TinyBuildReport:
    """Train the tiny model and save it to ``out`` (written to a temporary sibling folder,
    then renamed, so a reader never sees half a model). ``progress(step, steps, loss)`` is
    called every 10 steps."""
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    from personaevo.llm.corpus import SECTIONS, Section, build_corpus, corpus_fingerprint

    recipe = recipe or TinyRecipe()
    if recipe.hidden % 64:
        raise InputError(f"tiny model: hidden={recipe.hidden} must be a multiple of 64")
    unknown = sorted(set(recipe.section_weights) - set(SECTIONS))
    if unknown or any(w <= 0 for w in recipe.section_weights.values()):
        raise InputError(
            f"tiny model: section_weights {recipe.section_weights} must give weights > 0 to "
            f"registered sections ({', '.join(sorted(SECTIONS))})"
        )
    sections = {
        name: Section(s.fn, recipe.section_weights.get(name, s.weight))
        for name, s in SECTIONS.items()
    }
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not empty; choose a new folder for the model")
    start = time.perf_counter()
    corpus = build_corpus(recipe.conversations, recipe.seed, sections)
    tokenizer = build_tokenizer(
        [f"{m.role}\n{m.content}\n" for conv in corpus for m in conv],
        recipe.vocab_size,
        recipe.max_positions,
    )
    rows = encode_conversations(tokenizer, corpus)
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    vocab = math.ceil(len(tokenizer) / 64) * 64

    torch.manual_seed(recipe.seed)
    model = Qwen2ForCausalLM(model_config(recipe, vocab, eos_id, pad_id))
    model.train()
    losses = _train(model, rows, pad_id, recipe, progress)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        do_sample=True,
        temperature=0.7,
        top_p=1.0,
        max_new_tokens=256,
    )
    report = TinyBuildReport(
        recipe=recipe,
        corpus_fingerprint=corpus_fingerprint(),
        sections={name: s.weight for name, s in sorted(sections.items())},
        parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=vocab,
        tokens_trained=int(losses["tokens"]),
        loss_first=sum(losses["curve"][:10]) / len(losses["curve"][:10]),
        loss_last=sum(losses["curve"][-10:]) / len(losses["curve"][-10:]),
        seconds=0.0,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        portable_tokenizer_class(staging / "tokenizer_config.json")
        report.seconds = round(time.perf_counter() - start, 2)
        (staging / REPORT_FILE).write_text(report.model_dump_json(indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def model_config(recipe: TinyRecipe, vocab_size: int, eos_id=None, pad_id=None):
    """The ``Qwen2Config`` of ``recipe``: heads of width 64, tied embeddings, no BOS."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.hidden // 64,
        num_key_value_heads=recipe.hidden // 64,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def portable_tokenizer_class(path: Path) -> None:
    """Name the tokenizer class every transformers version (4.x included, as vLLM may pin)
    loads: ``PreTrainedTokenizerFast`` (5.x saves its new name ``TokenizersBackend``)."""
    data = json.loads(path.read_text())
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2) + "\n")


def _train(
    model, rows: list[tuple[list[int], list[int]]], pad_id: int, recipe: TinyRecipe, progress
) -> dict:
    """AdamW on right-padded batches; batches group conversations of similar length.
    ``tokens`` counts the tokens the model read (prompt and reply)."""
    import torch

    gen = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    limit = recipe.max_positions
    batches: list[list[int]] = []
    curve: list[float] = []
    tokens = 0
    for step in range(recipe.steps):
        if not batches:
            batches = _length_grouped_batches([len(r[0]) for r in rows], recipe.batch_size, gen)
        batch = [rows[i] for i in batches.pop()]
        width = min(limit, max(len(ids) for ids, _ in batch))
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, learned) in enumerate(batch):
            n = min(width, len(ids))
            input_ids[i, :n] = torch.tensor(ids[:n])
            labels[i, :n] = torch.tensor(learned[:n])
            mask[i, :n] = 1
        loss = _weighted_loss(model, input_ids, mask, labels, recipe.prompt_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        curve.append(loss.item())
        tokens += int(mask.sum())
        if progress is not None and (step + 1) % 10 == 0:
            progress(step + 1, recipe.steps, curve[-1])
    return {"curve": curve, "tokens": tokens}


def _weighted_loss(model, input_ids, mask, labels, prompt_weight: float):
    """Next-token cross-entropy (nats/token): weight 1 on assistant tokens (``labels`` set),
    ``prompt_weight`` on the other real tokens, 0 on padding; normalised by total weight.

    The LM head (``vocab × hidden`` per position, the biggest matrix of a tiny model) runs
    only on positions of non-zero weight: padding and, when ``prompt_weight`` is 0, the
    prompts cost nothing there."""
    import torch

    hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, :-1]
    assistant = (labels[:, 1:] != -100).float()
    weights = (assistant + prompt_weight * (1 - assistant) * mask[:, 1:].float()).reshape(-1)
    keep = weights > 0
    logits = model.lm_head(hidden.reshape(-1, hidden.shape[-1])[keep])
    losses = torch.nn.functional.cross_entropy(
        logits, input_ids[:, 1:].reshape(-1)[keep], reduction="none"
    )
    return (losses * weights[keep]).sum() / weights.sum()


def _length_grouped_batches(lengths: list[int], size: int, gen) -> list[list[int]]:
    """One epoch of batches: shuffle, sort within windows of 16 batches by length (less
    padding), then shuffle the batches."""
    import torch

    order = torch.randperm(len(lengths), generator=gen).tolist()
    window = size * 16
    batches = []
    for lo in range(0, len(order), window):
        chunk = sorted(order[lo : lo + window], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + size] for j in range(0, len(chunk), size))
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]
