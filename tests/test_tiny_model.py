"""The tiny model: corpus, tokenizer, training, saved folder, cache, and what it learned."""

from __future__ import annotations

import json
import re
import threading

import pytest

from personaevo.errors import InputError
from personaevo.llm import corpus
from personaevo.llm.base import Message
from personaevo.llm.corpus import STOP_MARKER, build_corpus, corpus_fingerprint, register_section
from personaevo.llm.tiny import (
    REPORT_FILE,
    TinyBuildReport,
    TinyRecipe,
    build_tiny_model,
    encode_conversation,
    tiny_model_path,
)


def test_corpus_is_seeded_and_sections_keep_their_formats():
    first = build_corpus(120, seed=1)
    assert first == build_corpus(120, seed=1)
    assert first != build_corpus(120, seed=2)
    assert len(first) == 120
    likert = corpus.section_conversations("likert", 40, seed=3)
    for conv in likert:
        assert conv[0].content.startswith("You are this person.")
        assert corpus.LIKERT_INSTRUCTION in conv[1].content
        assert re.fullmatch(r"[1-5]", conv[2].content)
    for conv in corpus.section_conversations("simulator_turns", 60, seed=3):
        ends = conv[1].content.endswith("Intent: end")
        assert (STOP_MARKER in conv[2].content) == ends
        assert conv[2].content.endswith(STOP_MARKER) == ends


def test_likert_answers_follow_the_trait_and_the_key():
    assert corpus.likert_answer(1.0, 1) == 5
    assert corpus.likert_answer(1.0, -1) == 1
    assert corpus.likert_answer(0.5, 1) == 3
    assert corpus.likert_answer(0.0, 1, noise=-3) == 1  # clipped, never 0


def test_registered_section_joins_the_corpus_and_changes_the_cache_key():
    before = corpus_fingerprint()

    def greetings(rng, n):
        return [
            [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
        ] * n

    register_section("greetings", greetings, weight=0.5)
    try:
        assert corpus_fingerprint() != before
        convs = build_corpus(90, seed=0)
        total = sum(section.weight for section in corpus.SECTIONS.values())
        assert sum(conv[-1].content == "hello" for conv in convs) == round(90 * 0.5 / total)
    finally:
        del corpus.SECTIONS["greetings"]
    assert corpus_fingerprint() == before
    with pytest.raises(ValueError, match="weight"):
        register_section("bad", greetings, weight=0)


def test_saved_folder_is_a_sane_qwen2_model(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["vocab_size"] % 64 == 0
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["max_position_embeddings"] >= 1024
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert config["eos_token_id"] in generation["eos_token_id"]
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["padding_side"] == "left"
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    report = TinyBuildReport.model_validate_json((tiny_model_dir / REPORT_FILE).read_text())
    assert 500_000 <= report.parameters <= 2_000_000
    registered = {name: section.weight for name, section in corpus.SECTIONS.items()}
    assert report.sections == {**registered, **report.recipe.section_weights}
    assert report.loss_last < report.loss_first - 2.0, "training did not lower the loss"


def test_tokenizer_reloads_with_template_and_encoding_matches_it(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.padding_side == "left"
    conv = corpus.section_conversations("likert", 1, seed=9)[0]
    text = tokenizer.apply_chat_template([m.model_dump() for m in conv], tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are this person.")
    ids, labels = encode_conversation(tokenizer, conv)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    learned = [t for t, label in zip(ids, labels, strict=True) if label != -100]
    assert tokenizer.decode(learned) == conv[-1].content + "<|im_end|>"


def test_the_model_learned_its_three_jobs(tiny_model_dir):
    from personaevo.llm.tiny_checks import check_model
    from personaevo.llm.transformers_backend import TransformersLLM

    checks = check_model(TransformersLLM(tiny_model_dir, device="cpu"), n=16)
    # An untrained model scores 0 on each (a first token among five digits: ~5/2048).
    assert checks.likert_parse_rate >= 0.6, checks
    assert checks.stop_recall >= 0.7, checks
    assert checks.stop_false_rate <= 0.2, checks
    assert checks.description_recall >= 0.05, checks


def test_batched_encoding_matches_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    from personaevo.llm.tiny import encode_conversations

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    convs = build_corpus(12, seed=4)
    rows = encode_conversations(tokenizer, convs)
    for conv, (ids, labels) in zip(convs, rows, strict=True):
        text = tokenizer.apply_chat_template([m.model_dump() for m in conv], tokenize=False)
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
        learned = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label >= 0])
        replies = [m.content + "<|im_end|>" for m in conv if m.role == "assistant"]
        assert learned == "".join(replies)
    assert encode_conversations(tokenizer, []) == []


def test_weighted_loss_equals_the_full_formula_without_padding_logits():
    """The LM head runs on weighted positions only; the loss must equal cross-entropy over
    every position weighted 1 (assistant), w (prompt) and 0 (padding)."""
    import torch
    from transformers import Qwen2ForCausalLM

    from personaevo.llm.tiny import _weighted_loss, model_config

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(model_config(TinyRecipe(hidden=64, layers=1), 128, 2, 0))
    ids = torch.randint(3, 128, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 5:] = ids[0, 5:]
    labels[1, 3:6] = ids[1, 3:6]
    for weight in (0.3, 0.0):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        assistant = (labels[:, 1:] != -100).float()
        w = (assistant + weight * (1 - assistant) * mask[:, 1:].float()).reshape(-1)
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 128), ids[:, 1:].reshape(-1), reduction="none"
        )
        expected = (ce * w).sum() / w.sum()
        got = _weighted_loss(model, ids, mask, labels, weight)
        assert torch.allclose(got, expected, atol=1e-5), (weight, got, expected)


def test_section_weights_must_name_registered_sections(tmp_path):
    for weights in ({"nonexistent": 1.0}, {"likert": 0.0}):
        recipe = TinyRecipe(steps=1, conversations=100, section_weights=weights)
        with pytest.raises(InputError, match="section_weights"):
            build_tiny_model(tmp_path / "model", recipe)
    assert not (tmp_path / "model").exists()


def test_build_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        build_tiny_model(tmp_path, TinyRecipe(steps=1, conversations=100))
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_tiny_model_path_prefers_the_variable(monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.setenv("PERSONAEVO_TINY_MODEL", str(tiny_model_dir))
    assert tiny_model_path() == tiny_model_dir
    monkeypatch.setenv("PERSONAEVO_TINY_MODEL", str(tmp_path / "nothing"))
    with pytest.raises(InputError, match="PERSONAEVO_TINY_MODEL"):
        tiny_model_path()


def test_tiny_model_path_builds_once_into_the_cache(monkeypatch, tmp_path, capsys):
    """Four threads ask at once: one build, which says what it does, how long it usually
    takes, its progress and when it is done (on stderr), so a first use never looks hung."""
    from types import SimpleNamespace

    from personaevo.llm import tiny

    monkeypatch.delenv("PERSONAEVO_TINY_MODEL", raising=False)
    monkeypatch.setenv("PERSONAEVO_CACHE", str(tmp_path))
    builds = []

    def fake_build(out, recipe, progress=None):
        builds.append(out)
        for step in (10, 50, 60):
            progress(step, 362, 2.5)
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / "tokenizer_config.json").write_text("{}")
        return SimpleNamespace(seconds=97.0)

    monkeypatch.setattr(tiny, "build_tiny_model", fake_build)
    found = []
    threads = [threading.Thread(target=lambda: found.append(tiny_model_path())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert set(found) == {builds[0]}
    assert builds[0].parent == tmp_path
    assert builds[0].name.startswith(f"tiny-model-{tiny.TINY_MODEL_VERSION}-")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"building the tiny model into {builds[0]} (first use only; usually about "
        f"{tiny.BUILD_SECONDS_2_CORES} s on 2 CPU cores, longer on a busy machine)",
        "  tiny model: step 50/362, loss 2.500",
        f"tiny model built in 97 s: {builds[0]}",
    ]
    assert tiny_model_path() == builds[0] and capsys.readouterr().err == ""  # built: silent
