"""Language-model backends on the tiny model, the OpenAI HTTP backend against a real server,
record and replay, usage accounting and the factory's errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from personaevo.cli import main
from personaevo.errors import FileFieldError, InputError
from personaevo.llm import LLMError, Message, SamplingParams, ScriptedLLM, Usage
from personaevo.llm.cassette import RecordingLLM, ReplayLLM
from personaevo.llm.config import LLMConfig
from personaevo.llm.factory import build_llm
from personaevo.llm.openai_backend import OpenAILLM
from personaevo.llm.server import OpenAIServer

GREEDY = SamplingParams(max_tokens=24, temperature=0.0)


def _conversations() -> list[list[Message]]:
    from personaevo.llm.corpus import likert_messages

    return [
        likert_messages("Patience: very low. Gives up after the first delay.", "I am patient."),
        [Message(role="user", content="Agent: Hello, how can I help you today?\nIntent: greet")],
        likert_messages("My openness is very high (95 on 0-100).", "I have a vivid imagination."),
    ]


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_dir):
    from personaevo.llm.transformers_backend import TransformersLLM

    return TransformersLLM(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def server(tiny_llm):
    with OpenAIServer(tiny_llm, "tiny", port=0) as srv:
        yield srv


# --- transformers -------------------------------------------------------------------------


def test_transformers_batches_chat_and_completion_with_exact_token_counts(tiny_llm):
    convs = _conversations()
    before = tiny_llm.usage_snapshot()
    replies = tiny_llm.chat(convs, GREEDY)
    assert len(replies) == 3
    template = tiny_llm.tokenizer.apply_chat_template
    for conv, reply in zip(convs, replies, strict=True):
        prompt = template(
            [m.model_dump() for m in conv], tokenize=False, add_generation_prompt=True
        )
        assert reply.prompt_tokens == len(tiny_llm.tokenizer(prompt)["input_ids"])
        assert 1 <= reply.completion_tokens <= GREEDY.max_tokens
    # a batch answers each request as it would be answered alone (greedy)
    assert tiny_llm.chat(convs[1:2], GREEDY)[0].text == replies[1].text
    prompts = ["Patience: very low.", "Traits: domain=airline"]
    done = tiny_llm.complete(prompts, SamplingParams(max_tokens=5, temperature=0.0))
    assert [c.prompt_tokens for c in done] == [
        len(tiny_llm.tokenizer(p)["input_ids"]) for p in prompts
    ]
    delta = tiny_llm.usage_snapshot() - before
    assert (delta.calls, delta.requests) == (3, 6)
    assert delta.prompt_tokens == sum(c.prompt_tokens for c in [*replies, *done]) + (
        replies[1].prompt_tokens
    )
    assert delta.seconds > 0


def test_transformers_seeds_repeat_and_leave_the_global_generator_alone(tiny_llm):
    import torch

    params = SamplingParams(max_tokens=16, temperature=1.0, seed=7)
    convs = _conversations()
    state = torch.random.get_rng_state()
    first = [c.text for c in tiny_llm.chat(convs, params)]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [c.text for c in tiny_llm.chat(convs, params)] == first
    other = [c.text for c in tiny_llm.chat(convs, params.model_copy(update={"seed": 8}))]
    assert other != first


def test_transformers_stop_strings_are_cut_and_lengths_reported(tiny_llm):
    import random

    from personaevo.llm.corpus import describe_request, sample_persona
    from personaevo.spaces import load_space

    space = load_space("big_five")  # a description: a long reply
    conv = [describe_request(space, sample_persona(space, random.Random(0)))]
    free = tiny_llm.chat(conv, SamplingParams(max_tokens=40, temperature=0.0))[0]
    assert len(free.text) > 12, free
    stop = free.text[8:11]
    cut = tiny_llm.chat(conv, SamplingParams(max_tokens=40, temperature=0.0, stop=(stop,)))[0]
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens <= free.completion_tokens
    short = tiny_llm.chat(conv, SamplingParams(max_tokens=2, temperature=0.0))[0]
    assert (short.finish_reason, short.completion_tokens) == ("length", 2)


def test_transformers_serves_concurrent_callers(tiny_llm):
    convs = _conversations()
    expected = [c.text for c in tiny_llm.chat(convs, GREEDY)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append([c.text for c in tiny_llm.chat(convs, GREEDY)])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [expected] * 3


# --- OpenAI-compatible HTTP ---------------------------------------------------------------


def test_openai_backend_matches_in_process_generation(tiny_llm, server):
    client = OpenAILLM(server.url, "tiny")
    assert client.served_models() == ["tiny"]
    convs = _conversations()
    local = [tiny_llm.chat([conv], GREEDY)[0] for conv in convs]  # the server asks one by one
    remote = client.chat(convs, GREEDY)
    assert [c.text for c in remote] == [c.text for c in local]
    assert [c.prompt_tokens for c in remote] == [c.prompt_tokens for c in local]
    assert [c.completion_tokens for c in remote] == [c.completion_tokens for c in local]
    prompts = ["Patience: very low.", "Goal: get a refund"]
    params = SamplingParams(max_tokens=6, temperature=0.0, stop=("zz",))
    assert [c.text for c in client.complete(prompts, params)] == [
        tiny_llm.complete([prompt], params)[0].text for prompt in prompts
    ]
    assert client.usage.requests == 5
    seeded = SamplingParams(max_tokens=12, temperature=1.0, seed=3)
    assert [c.text for c in client.chat(convs, seeded)] == [
        c.text for c in client.chat(convs, seeded)
    ]
    client.close()


def test_openai_backend_names_the_model_when_the_server_has_only_one(server):
    client = OpenAILLM(server.url)
    client.check()
    assert client.model == "tiny"
    assert client.name == f"openai:{server.url} (tiny)"


def test_openai_unknown_model_lists_the_served_ones(server):
    client = OpenAILLM(server.url, "gpt-imaginary")
    with pytest.raises(LLMError, match=r"no model 'gpt-imaginary'.*\['tiny'\]") as err:
        client.chat(_conversations()[:1], GREEDY)
    assert server.url in str(err.value)
    assert client.usage.failed_calls == 1 and client.usage.calls == 0


def test_openai_unreachable_server_is_retried_then_named():
    """A server that accepts and drops every connection: the SDK retries with backoff."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    accepted = []

    def drop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    client = OpenAILLM(url, "m", max_retries=2, timeout=5)
    try:
        with pytest.raises(LLMError, match="cannot reach the server") as err:
            client.chat(_conversations()[:1], GREEDY)
    finally:
        listener.close()
    assert url in str(err.value)
    assert len(accepted) == 3  # one try and two retries
    assert accepted[-1] - accepted[0] >= 0.5  # backoff between them


def test_llm_ask_against_a_wrong_or_dead_server_says_so_in_one_line(server, capsys):
    """``llm ask`` with an unknown ``--llm-model`` or against a server that is down: one
    line that names the backend and what to do, exit 1, no traceback."""
    from personaevo.cli import main

    argv = ["llm", "ask", "--llm", f"openai:{server.url}", "--llm-model", "gpt-imaginary", "Hi"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert server.url in err and "gpt-imaginary" in err and "'tiny'" in err
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    assert main(["llm", "ask", "--llm", f"openai:{dead}", "--llm-model", "m", "Hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert dead in err and "cannot reach the server" in err and "is it running" in err


def test_server_answers_bad_requests_in_the_openai_error_format(server):
    def post(path: str, body: bytes) -> tuple[int, dict]:
        request = urllib.request.Request(
            server.url.removesuffix("/v1") + path, data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = post("/v1/chat/completions", b"{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    status, body = post("/v1/chat/completions", json.dumps({"model": "tiny"}).encode())
    assert status == 400 and "messages" in body["error"]["message"]
    status, body = post("/v1/embeddings", b"{}")
    assert status == 404
    status, body = post(
        "/v1/completions", json.dumps({"model": "tiny", "prompt": "x", "stream": True}).encode()
    )
    assert status == 400 and "stream" in body["error"]["message"]


def test_llm_serve_and_ask_commands(tiny_model_dir, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "personaevo.cli", "llm", "serve", "--port", str(port)]
    command += ["--llm", f"transformers:{tiny_model_dir}", "--served-name", "tiny"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        client = OpenAILLM(url, "tiny", max_retries=0, timeout=10)
        deadline = time.monotonic() + 120
        while True:
            try:
                assert client.served_models() == ["tiny"]
                break
            except LLMError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        code = main(["llm", "ask", "--llm", f"openai:{url}", "--llm-model", "tiny", "Hello"])
        assert code == 0
        out = capsys.readouterr().out
        assert "prompt +" in out and "completion tokens" in out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- record and replay --------------------------------------------------------------------


def _counting_llm() -> ScriptedLLM:
    """Answers ``<prompt>#<how often it was asked>`` so repeated requests differ."""
    seen: dict[str, int] = {}

    def reply(text: str) -> str:
        seen[text] = seen.get(text, 0) + 1
        return f"{text}#{seen[text]}"

    return ScriptedLLM(reply, name="counting")


def test_replay_gives_back_the_recording_in_order(tmp_path):
    cassette = tmp_path / "calls.jsonl"
    recorder = RecordingLLM(_counting_llm(), cassette)
    convs = [[Message(role="user", content="a")], [Message(role="user", content="a")]]
    params = SamplingParams(max_tokens=5, seed=1)
    recorded = recorder.chat(convs, params) + recorder.chat(convs[:1], params)
    recorded += recorder.complete(["p", "q"], GREEDY)
    assert [c.text for c in recorded[:3]] == ["a#1", "a#2", "a#3"]
    lines = [json.loads(line) for line in cassette.read_text().splitlines()]
    assert len(lines) == 5 and {line["backend"] for line in lines} == {"counting"}
    assert lines[0]["input"] == [{"role": "user", "content": "a"}]

    replay = ReplayLLM(cassette)
    again = replay.chat(convs, params) + replay.chat(convs[:1], params)
    again += replay.complete(["p", "q"], GREEDY)
    assert again == recorded
    assert replay.usage.prompt_tokens == recorder.usage.prompt_tokens
    assert replay.usage.completion_tokens == recorder.usage.completion_tokens
    with pytest.raises(LLMError, match="asked more often than recorded"):
        replay.chat(convs[:1], params)
    with pytest.raises(LLMError, match=r"calls.jsonl: no recorded answer.*\"b\""):
        ReplayLLM(cassette).chat([[Message(role="user", content="b")]], params)
    with pytest.raises(LLMError, match="no recorded answer"):  # other sampling, other request
        ReplayLLM(cassette).chat(convs[:1], params.model_copy(update={"seed": 2}))


def test_record_and_replay_the_tiny_model_through_the_factory(tiny_model_dir, tmp_path):
    cassette = tmp_path / "tiny.jsonl"
    sampling = SamplingParams(max_tokens=10, temperature=1.0, seed=5)
    live = build_llm(
        LLMConfig(backend=f"transformers:{tiny_model_dir}", record=str(cassette), sampling=sampling)
    )
    assert live.default_params == sampling
    recorded = live.chat(_conversations())
    replayed = build_llm(LLMConfig(backend=f"replay:{cassette}", sampling=sampling))
    assert replayed.chat(_conversations()) == recorded
    assert replayed.usage.completion_tokens == live.usage.completion_tokens


def test_recording_from_many_threads_keeps_whole_lines(tmp_path):
    cassette = tmp_path / "threads.jsonl"
    recorder = RecordingLLM(ScriptedLLM(lambda text: text * 50), cassette)

    def work(k: int) -> None:
        for i in range(20):
            recorder.complete([f"{k}-{i}-{j}" for j in range(3)], GREEDY)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = cassette.read_text().splitlines()
    assert len(lines) == 4 * 20 * 3
    assert all(json.loads(line)["kind"] == "complete" for line in lines)
    assert ReplayLLM(cassette).recorded == 240


def test_a_broken_cassette_line_is_named(tmp_path):
    cassette = tmp_path / "bad.jsonl"
    cassette.write_text('{"key": "k", "completion": {"text": "x"}}\n{"key": "k"\n')
    with pytest.raises(FileFieldError, match=r"bad.jsonl: line 2: not a cassette entry"):
        ReplayLLM(cassette)
    with pytest.raises(InputError, match="no such cassette"):
        ReplayLLM(tmp_path / "absent.jsonl")


# --- accounting ---------------------------------------------------------------------------


def test_usage_is_exact_under_concurrent_calls_and_counts_failures():
    llm = ScriptedLLM(lambda text: "one two")
    start = llm.usage_snapshot()

    def work() -> None:
        for _ in range(200):
            llm.chat([[Message(role="user", content="x y z")]] * 2)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delta = llm.usage_snapshot() - start
    assert (delta.calls, delta.requests) == (1600, 3200)
    assert (delta.prompt_tokens, delta.completion_tokens) == (3 * 3200, 2 * 3200)

    def broken(text: str) -> str:
        raise RuntimeError("engine down")

    failing = ScriptedLLM(broken)
    with pytest.raises(RuntimeError):
        failing.chat([[Message(role="user", content="x")]])
    assert failing.usage_snapshot() == Usage(failed_calls=1)


# --- the factory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt4", "unknown kind 'gpt4'"),
        ("tiny:x", "unknown kind 'tiny'"),
        ("transformers:", "needs a model folder"),
        ("transformers:/no/such/model", "model folder '/no/such/model' does not exist"),
        ("vllm:/no/such/model", "does not exist"),
        ("openai:127.0.0.1:8000", "must start with http"),
        ("replay:/no/such.jsonl", "no such cassette"),
    ],
)
def test_factory_names_a_bad_spec(spec, message):
    with pytest.raises(InputError, match=message) as err:
        build_llm(LLMConfig(backend=spec))
    assert spec.split(":")[0] in str(err.value)


def test_factory_refuses_a_served_model_name_for_a_local_backend(tiny_model_dir):
    with pytest.raises(InputError, match="only openai:URL backends take one"):
        build_llm(LLMConfig(backend=f"transformers:{tiny_model_dir}", model="qwen"))


def test_factory_vllm_without_the_extra_says_how_to_get_it(tiny_model_dir):
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match=r"vLLM is not installed.*personaevo\[vllm\]"):
            build_llm(f"vllm:{tiny_model_dir}")
    else:  # pragma: no cover - only where vLLM is installed
        pytest.skip("vLLM is installed here")


def test_factory_tiny_uses_the_exported_model(tiny_model_dir):
    llm = build_llm(LLMConfig(backend="tiny"))
    assert llm.name == f"transformers:{tiny_model_dir}"


def test_cli_reports_a_missing_model_folder(capsys):
    code = main(["llm", "ask", "--llm", "transformers:/no/such/model", "hello"])
    assert code == 2
    assert "'/no/such/model' does not exist" in capsys.readouterr().err


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_transformers_on_cuda(tiny_model_dir):  # pragma: no cover - GPU machines
    from personaevo.llm.transformers_backend import TransformersLLM

    gpu = TransformersLLM(tiny_model_dir, device="cuda")
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=11)
    first = gpu.chat(_conversations(), params)
    assert gpu.chat(_conversations(), params) == first
    assert next(gpu.model.parameters()).device.type == "cuda"
    greedy = gpu.chat(_conversations(), GREEDY)
    assert all(c.completion_tokens >= 1 for c in greedy)


def test_the_default_model_is_smollm2_unless_the_variable_names_another(monkeypatch):
    """Wherever a model is needed and none is named (LLMConfig, train-simulator, simulate,
    serve-simulator), SmolLM2 is used; $PERSONAEVO_DEFAULT_MODEL overrides it (the suite
    sets ``tiny``, see conftest)."""
    from personaevo.cli import build_parser
    from personaevo.llm.config import DEFAULT_MODEL_VARIABLE, default_model
    from personaevo.simulator import TrainConfig

    monkeypatch.delenv(DEFAULT_MODEL_VARIABLE, raising=False)
    assert default_model() == "smollm2"
    assert LLMConfig().backend == "smollm2" and TrainConfig().model == "smollm2"
    parser = build_parser()
    assert parser.parse_args(["simulate"]).model == "smollm2"
    assert parser.parse_args(["serve-simulator"]).model == "smollm2"
    monkeypatch.setenv(DEFAULT_MODEL_VARIABLE, "gemma3-270m")
    assert LLMConfig().backend == "gemma3-270m" and TrainConfig().model == "gemma3-270m"
    assert build_parser().parse_args(["simulate"]).model == "gemma3-270m"
    monkeypatch.setenv(DEFAULT_MODEL_VARIABLE, "  ")
    assert default_model() == "smollm2"


def test_the_llm_package_imports_without_the_training_and_cluster_stack():
    """vLLM's own venv (scripts/vllm_cpu_env.sh) has personaevo without Ray, TRL, PEFT,
    datasets, gguf or matplotlib; ``import personaevo.llm.factory`` must still work there
    (the venv's install check and the offline-engine test run it)."""
    absent = ["ray", "trl", "peft", "datasets", "gguf", "matplotlib", "selenium"]
    code = (
        "import sys\n"
        f"for name in {absent!r}: sys.modules[name] = None\n"
        "import personaevo.llm.factory, personaevo.simulator\n"
        "print('imported')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-2000:]
