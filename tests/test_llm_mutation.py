"""LLM-driven mutation: patches, retries, outcomes, prompts, batching per generation,
reproducibility, accounting in runs (and across resume), and ``llm_two_stage.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from personaevo.evaluate import (
    Evaluation,
    evaluate_programs,
    generator_space,
    seed_generator_paths,
)
from personaevo.evolution import EvolveConfig, run_evolution
from personaevo.evolution.loop import Evolution
from personaevo.llm.base import LLM, ProgramLLM, ScriptedLLM, Usage
from personaevo.operators import LLMMutation, mutate
from personaevo.operators.llm import OUTCOMES
from personaevo.operators.llm_patch import (
    PatchError,
    apply_blocks,
    apply_reply,
    extract_program,
    parse_blocks,
)
from personaevo.operators.llm_prompt import DEFAULT_DIRECTIVES, Candidate
from personaevo.programs import ast_hash, load_program
from personaevo.reference import ReferencePopulation
from personaevo.sandbox import Sandbox, SandboxLimits

PROGRAM = """\
SCALE = 0.5


def generate(space, n, rng, llm=None):
    personas = []
    attempts = 0
    while len(personas) < n and attempts < 100 * n:
        attempts += 1
        traits = {}
        for axis in space.axes:
            u = min(max(0.5 + SCALE * (rng.random() - 0.5) * 2, 0.0), 0.999)
            if axis.kind == "continuous":
                traits[axis.name] = float(axis.low + u * (axis.high - axis.low))
            else:
                traits[axis.name] = axis.values[int(u * len(axis.values))]
        if space.is_feasible(traits):
            personas.append({"id": f"p{len(personas)}", "traits": traits})
    return personas
"""


def block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def parent_of(prompt: str) -> str:
    """The parent program shown in a mutation prompt."""
    match = re.search(r"## Parent program \([^)]*\)\n```python\n(.*?)\n```", prompt, re.S)
    assert match, prompt[:2000]
    return match.group(1) + "\n"


def perturb(prompt: str) -> str:
    """A real mutation: change the SCALE constant of the parent (a diff, or a rewrite when
    asked), or say something useless when the prompt is a retry."""
    if prompt.startswith("Your reply could not be used"):
        return "sorry"
    source = parent_of(prompt)
    match = re.search(r"^SCALE = (.+)$", source, re.M)
    if match is None:
        return "no idea"
    old = match.group(0)
    new = f"SCALE = {round(float(match.group(1)) * 0.83 + 0.07, 6)}"
    if "complete rewrite" in prompt:
        return f"Here it is:\n```python\n{source.replace(old, new)}```\n"
    return block(old, new)


def candidate(source: str, name: str = "parent", evaluation: Evaluation | None = None):
    return Candidate(ast_hash(source), name, source, evaluation)


# --------------------------------------------------------------------------- patches


def test_exact_block_applies_and_multiple_blocks_apply_in_order():
    child = apply_blocks(PROGRAM, parse_blocks(block("SCALE = 0.5", "SCALE = 0.9")))
    assert "SCALE = 0.9" in child and "SCALE = 0.5" not in child
    reply = "\n".join(
        [
            "First I change the scale, then the attempts.",
            block("SCALE = 0.5", "SCALE = 0.7\nEXTRA = 2"),
            "```",
            block("        attempts += 1", "        attempts += EXTRA"),
            "```",
        ]
    )
    blocks = parse_blocks(reply)
    assert len(blocks) == 2
    child = apply_blocks(PROGRAM, blocks)
    assert "EXTRA = 2" in child and "attempts += EXTRA" in child
    # later blocks see the earlier edits
    two = block("SCALE = 0.5", "S = 1") + "\n" + block("S = 1", "S=2")
    assert apply_blocks(PROGRAM, parse_blocks(two)).startswith("S=2\n\n")


def test_a_block_that_does_not_match_is_an_error_not_a_no_op():
    with pytest.raises(PatchError) as err:
        apply_blocks(PROGRAM, parse_blocks(block("SCALE = 0.6", "SCALE = 0.9")))
    assert err.value.kind == "no_match"
    assert "closest program line is 'SCALE = 0.5'" in str(err.value)
    # whole lines, indentation included: a part of a line or other indentation is no match
    for search in ("    attempts += 1", "attempts += 1", "SCALE"):
        with pytest.raises(PatchError) as err:
            apply_blocks(PROGRAM, [(search, "x = 1")])
        assert err.value.kind == "no_match"
    with pytest.raises(PatchError) as err:
        apply_blocks("a = 1\nb = 2\na = 1\n", parse_blocks(block("a = 1", "a = 3")))
    assert err.value.kind == "ambiguous" and "2 times" in str(err.value)


@pytest.mark.parametrize(
    "reply",
    [
        "I would raise SCALE a little.",
        "<<<<<<< SEARCH\nSCALE = 0.5\n>>>>>>> REPLACE",
        "<<<<<<< SEARCH\nSCALE = 0.5\n=======\nSCALE = 0.6\n",
        "<<<<<<< SEARCH\n\n=======\nSCALE = 0.6\n>>>>>>> REPLACE",
        "=======\nSCALE = 0.6\n>>>>>>> REPLACE",
    ],
)
def test_malformed_replies_are_bad_format(reply):
    with pytest.raises(PatchError) as err:
        apply_reply(PROGRAM, reply, rewrite=False)
    assert err.value.kind == "bad_format"


def test_full_rewrite_takes_the_fenced_program():
    reply = (
        "Notes:\n```text\nnot code\n```\n```python\n" + PROGRAM.replace("0.5", "0.8") + "```\nDone."
    )
    assert apply_reply(PROGRAM, reply, rewrite=True) == PROGRAM.replace("0.5", "0.8")
    assert extract_program("```\n" + PROGRAM + "```") == PROGRAM
    with pytest.raises(PatchError) as err:
        apply_reply(PROGRAM, block("SCALE = 0.5", "SCALE = 0.9"), rewrite=True)
    assert err.value.kind == "bad_format"


# -------------------------------------------------------------------------- operator


class Recorder:
    """A ScriptedLLM reply function that keeps every last-turn prompt it saw."""

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.reply(prompt)


def test_failed_patch_is_re_asked_once_with_the_error():
    def reply(prompt: str) -> str:
        if prompt.startswith("Your reply could not be used"):
            return block("SCALE = 0.5", "SCALE = 0.95")
        return block("SCALE = 0.55", "SCALE = 0.95")

    recorder = Recorder(reply)
    llm = ScriptedLLM(recorder)
    op = LLMMutation(llm, full_rewrite_rate=0.0)
    batch = op.mutate_batch([candidate(PROGRAM)], [], np.random.default_rng(0))
    (child,) = batch.children
    assert child.outcome == "applied_after_retry" and child.attempts == 2
    assert "SCALE = 0.95" in child.result.source
    assert len(recorder.prompts) == 2 and llm.usage.calls == 2 == batch.usage.calls
    assert "no_match" in recorder.prompts[1] and "SCALE = 0.55" in recorder.prompts[1]
    assert batch.usage.completion_tokens > 0 and batch.usage.prompt_tokens > 0


def test_outcomes_are_counted_and_every_request_is_settled():
    replies = {
        "a": block("SCALE = 0.5", "SCALE = 0.6"),  # applied
        "b": "I cannot help with that.",  # bad_format
        "c": block("SCALE = 0.4", "SCALE = 0.6"),  # no_match
        "d": block("SCALE = 0.5", "import os\nSCALE = 0.6"),  # contract
        "e": block("SCALE = 0.5", "SCALE = = 0.6"),  # syntax
        "f": block("SCALE = 0.5", "SCALE = 0.5  # the same"),  # identical
        "g": block("# g", "# h"),  # ambiguous
    }
    parents = [candidate(PROGRAM.replace("SCALE", f"# {k}\n# {k}\nSCALE", 1), k) for k in replies]

    def reply(prompt: str) -> str:
        if prompt.startswith("Your reply could not be used"):
            return "still no"
        return replies[re.search(r"^# (\w)$", parent_of(prompt), re.M).group(1)]

    llm = ScriptedLLM(reply)
    batch = LLMMutation(llm, full_rewrite_rate=0.0).mutate_batch(
        parents, [], np.random.default_rng(1)
    )
    # after the retry ("still no") a failed request ends as bad_format
    assert [c.outcome for c in batch.children] == ["applied"] + ["bad_format"] * 6
    assert batch.outcomes == {"applied": 1, "bad_format": 6}
    assert llm.usage.calls == 2 and llm.usage.requests == 7 + 6  # two batched calls

    no_retry = ScriptedLLM(lambda p: replies["a"] if p.startswith("Your") else reply(p))
    batch = LLMMutation(no_retry, full_rewrite_rate=0.0).mutate_batch(
        parents, [], np.random.default_rng(1)
    )
    assert batch.outcomes == {"applied": 1, "applied_after_retry": 6}


def test_first_try_outcome_kinds():
    """The first reply's failure kind is what the retry prompt names."""
    parent = candidate(PROGRAM.replace("SCALE", "# x\n# x\nSCALE", 1))
    cases = {
        "no_match": block("SCALE = 0.4", "SCALE = 0.6"),
        "contract": block("SCALE = 0.5", "import os\nSCALE = 0.6"),
        "syntax": block("SCALE = 0.5", "SCALE = = 0.6"),
        "identical": block("SCALE = 0.5", "SCALE = 0.5  # the same"),
        "ambiguous": block("# x", "# y"),
        "bad_format": "no blocks here",
    }
    for kind, first in cases.items():
        recorder = Recorder(lambda p, first=first: first)
        batch = LLMMutation(ScriptedLLM(recorder), full_rewrite_rate=0.0).mutate_batch(
            [parent], [], np.random.default_rng(0)
        )
        assert batch.children[0].outcome == kind
        assert f"Error ({kind})" in recorder.prompts[1]


def test_prompt_shows_directive_inspirations_feedback_and_contract(customer_support, sandbox):
    reference = ReferencePopulation.from_marginals(customer_support, n=5000, seed=0)
    paths = {p.stem: p for p in seed_generator_paths()}
    programs = [paths["uniform"], paths["sobol"], paths["stratified_extremes"]]
    evaluations = evaluate_programs(
        programs, customer_support, n=40, reference=reference, n_probes=500, sandbox=sandbox
    )
    front = [
        candidate(p.read_text(), p.stem, e) for p, e in zip(programs, evaluations, strict=True)
    ]
    failed = Evaluation(
        program="broken",
        program_hash=ast_hash(PROGRAM),
        n=40,
        seed=0,
        ok=False,
        failure="exception",
        message="KeyError: 'age'",
        traceback="Traceback (most recent call last):\n  ...\nKeyError: 'age'",
    )
    recorder = Recorder(lambda p: block("SCALE = 0.5", "SCALE = 0.6"))
    op = LLMMutation(
        ScriptedLLM(recorder),
        customer_support,
        reference,
        ["reference.rare_hits_tway.3", "mc_coverage"],
        directives=["Only ever change SCALE."],
        full_rewrite_rate=0.0,
    )
    batch = op.mutate_batch(
        [candidate(PROGRAM, "broken", failed), front[0]], front, np.random.default_rng(0)
    )
    first, second, retry = recorder.prompts  # the uniform program has no SCALE line
    assert retry.startswith("Your reply could not be used. Error (no_match)")
    for prompt in (first, second):
        assert "## Directive\nOnly ever change SCALE." in prompt
        assert "def generate(space, n, rng, llm=None)" in prompt  # the contract
        assert "Allowed modules:" in prompt and "numpy" in prompt
        assert "patience: ordinal" in prompt  # the space
        assert "<<<<<<< SEARCH" in prompt
        assert prompt.count("## Inspiration") == 2
        assert "Rare combinations of real respondents" in prompt
    assert "The parent FAILED: exception: KeyError: 'age'" in first
    assert "Traceback (last lines)" in first
    # a parent never inspires itself; an evaluated parent gets its metrics and gaps
    assert "Pareto front (uniform" not in second and "Pareto front (uniform" in first
    assert "## Parent's metrics" in second and "reference.rare_hits_tway.3:" in second
    assert "Weakest metrics relative to the Pareto front" in second
    assert "rare 3-way combinations" in second
    assert batch.outcomes == {"applied": 1, "no_match": 1}
    assert set(DEFAULT_DIRECTIVES) and all(len(d) > 40 for d in DEFAULT_DIRECTIVES)


def test_directives_and_rewrites_are_drawn_by_rate_and_seed():
    recorder = Recorder(perturb)
    op = LLMMutation(
        ScriptedLLM(recorder), directives=["D-one.", "D-two.", "D-three."], full_rewrite_rate=0.5
    )
    parents = [candidate(PROGRAM.replace("0.5", f"0.{i + 1}"), f"p{i}") for i in range(40)]
    batch = op.mutate_batch(parents, [], np.random.default_rng(3))
    assert batch.outcomes == {"applied": 40} and len(recorder.prompts) == 40
    directives = [re.search(r"## Directive\n(\S+)", p).group(1) for p in recorder.prompts]
    assert set(directives) == {"D-one.", "D-two.", "D-three."}
    rewrites = sum(c.rewrite for c in batch.children)
    assert 8 <= rewrites <= 32
    again = LLMMutation(
        ScriptedLLM(perturb), directives=["D-one.", "D-two.", "D-three."], full_rewrite_rate=0.5
    ).mutate_batch(parents, [], np.random.default_rng(3))
    assert [c.result.source for c in again.children] == [c.result.source for c in batch.children]
    assert [c.directive for c in again.children] == [c.directive for c in batch.children]


class Unreachable(LLM):
    name = "openai:http://127.0.0.1:9/v1"

    def _chat(self, conversations, params):
        raise ConnectionError(f"{self.name}: connection refused")

    def _complete(self, prompts, params):
        raise ConnectionError(f"{self.name}: connection refused")


def test_a_failing_model_is_counted_not_raised():
    op = LLMMutation(Unreachable())
    batch = op.mutate_batch([candidate(PROGRAM)] * 3, [], np.random.default_rng(0))
    assert batch.outcomes == {"llm_error": 3}
    assert "connection refused" in batch.children[0].error
    assert batch.usage.failed_calls == 1 and batch.usage.calls == batch.usage.requests == 0
    # as a plain Mutation (one parent), failures map onto the operator failure kinds
    result = mutate(PROGRAM, np.random.default_rng(0), [(op, 1.0)])
    assert not result.ok and result.failure == "error" and "llm_error" in result.detail
    ok = mutate(PROGRAM, np.random.default_rng(0), [(LLMMutation(ScriptedLLM(perturb)), 1.0)])
    assert ok.ok and ok.operator == "llm" and "SCALE = 0.485" in ok.source


# ---------------------------------------------------------------- the loop, in-process


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=1, limits=SandboxLimits(wall_seconds=30, cpu_seconds=30)) as box:
        yield box


def evolution(tiny, sandbox, llm, rate=1.0, seed=0, population=4) -> Evolution:
    def evaluate(tasks):
        tasks = list(tasks)
        results = evaluate_programs(
            [load_program(src, name=name) for _, src, name in tasks],
            tiny,
            n=20,
            sandbox=sandbox,
            n_probes=300,
        )
        for e in results:  # as if each program had made one call of its model
            e.llm_usage = Usage(calls=1, requests=2, prompt_tokens=10)
        return {key: e for (key, _, _), e in zip(tasks, results, strict=True)}

    op = LLMMutation(llm, tiny, None, ["mc_coverage", "tway_coverage.2", "validity"])
    return Evolution(
        ["mc_coverage", "tway_coverage.2", "validity"],
        population,
        2,
        0.0,
        1,
        1,
        seed,
        evaluate,
        llm_mutation=op,
        llm_mutation_rate=rate,
    )


def test_one_batched_call_per_generation_and_children_counted(tiny, sandbox):
    llm = ScriptedLLM(perturb)
    evo = evolution(tiny, sandbox, llm)
    evo.seed_population([("scaled", PROGRAM)])
    assert llm.usage.calls == 0  # seeding uses the AST operators only
    for generation in (1, 2):
        evo.step()
        # every mutation of both islands went to the model: one batched call (all applied)
        assert llm.usage.calls == generation
        assert llm.usage.requests == 2 * 4 * generation
    outcomes = evo.llm_outcomes()
    assert outcomes["applied"] + outcomes.get("duplicate", 0) == 16
    record = evo.logbook[-1]
    assert record["llm_mutation"] == outcomes
    # mutation usage plus the usage each new evaluation reported
    assert record["llm"]["calls"] == llm.usage.calls + evo.evaluations
    assert record["llm"]["prompt_tokens"] == llm.usage.prompt_tokens + 10 * evo.evaluations
    born = [i for isl in evo.islands for i in isl if i.operator == "llm"]
    assert born and all(evo.cache[i.key].ok for i in born)


def test_failed_llm_children_are_replaced_by_ast_mutants(tiny, sandbox):
    llm = ScriptedLLM(lambda prompt: "no blocks")
    evo = evolution(tiny, sandbox, llm, rate=1.0)
    evo.seed_population([("scaled", PROGRAM)])
    evo.step()
    assert llm.usage.calls == 2  # the first batch, and the retries in a second batch
    assert evo.llm_outcomes() == {"bad_format": 8}
    # the islands still got children, from the AST operators
    assert any(op != "llm" for (op, outcome) in evo.variation if outcome == "ok")
    assert evo.logbook[-1]["llm_mutation"] == {"bad_format": 8}

    down = evolution(tiny, sandbox, Unreachable(), rate=1.0)
    down.seed_population([("scaled", PROGRAM)])
    down.step()  # the model is unreachable: counted, and the generation goes on
    assert down.llm_outcomes() == {"llm_error": 8} and "connection refused" in down.llm_error
    assert all(len(island) == 4 for island in down.islands)
    assert down.llm_usage["mutation"].failed_calls == 1


def test_same_seed_and_replies_give_the_same_run(tiny, sandbox, tmp_path):
    from personaevo.llm.cassette import RecordingLLM, ReplayLLM

    cassette = tmp_path / "calls.jsonl"
    makers = [
        lambda: ScriptedLLM(perturb),
        lambda: RecordingLLM(ScriptedLLM(perturb), cassette),
        lambda: ReplayLLM(cassette),  # the replies the run before recorded
    ]
    runs = []
    for make in makers:
        evo = evolution(tiny, sandbox, make(), rate=0.6, seed=5)
        evo.seed_population([("scaled", PROGRAM)])
        evo.step()
        evo.step()
        runs.append(
            (
                [[i.key for i in isl] for isl in evo.islands],
                sorted(evo.variation.items()),
                evo.llm_usage["mutation"].prompt_tokens,
            )
        )
    assert runs[0] == runs[1] == runs[2]
    assert any(op == "llm" for (op, _), _ in runs[0][1])


# ----------------------------------------------------------- runs on Ray, with resume


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def run_config(tmp: Path, name: str, generations: int) -> EvolveConfig:
    seed = tmp / "scaled.py"
    seed.write_text(PROGRAM)
    return EvolveConfig(
        space="mental_health_support",
        builtin_reference=False,
        seeds=[str(seed)],
        generations=generations,
        population=4,
        islands=2,
        crossover_rate=0.2,
        llm_mutation_rate=0.7,
        workers=1,
        n=20,
        probes=300,
        seed=2,
        out=str(tmp / name),
    )


def logbook(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "logbook.jsonl").read_text().splitlines()]


def test_run_records_llm_children_and_usage_and_resume_keeps_totals(tmp_path, ray_runtime):
    # generation 1, then a resume (a fresh model client) to generation 2
    first = ScriptedLLM(perturb)
    run_evolution(run_config(tmp_path, "run", 1), log=lambda _: None, llm=first)
    lines: list[str] = []
    second = ScriptedLLM(perturb)
    evo, rundir, _ = run_evolution(
        run_config(tmp_path, "run", 2), resume=True, log=lines.append, llm=second
    )
    assert first.usage.calls == 1 and second.usage.calls == 1  # one batched call each
    records = [json.loads(x) for x in (rundir.path / "evaluations.jsonl").read_text().splitlines()]
    born = [r for r in records if r["operator"] == "llm"]
    assert born and all(r["evaluation"]["ok"] for r in born)
    assert all(len(r["parents"]) == 1 for r in born)
    assert {r["generation"] for r in born} == {1, 2}

    book = logbook(rundir.path)
    assert [r["llm"]["calls"] for r in book] == [0, 1, 2]  # cumulative across the resume
    assert set(book[-1]["llm"]) >= {
        "calls",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "seconds",
    }
    both = first.usage + second.usage
    usage = json.loads((rundir.path / "llm_usage.json").read_text())
    for key in ("calls", "requests", "prompt_tokens", "completion_tokens"):
        assert usage["mutation"][key] == usage["total"][key] == book[-1]["llm"][key]
        assert usage["mutation"][key] == getattr(both, key)
    assert usage["evaluation"]["calls"] == 0 and usage["model"] == "scripted"
    assert usage["mutation_outcomes"] == book[-1]["llm_mutation"] == evo.llm_outcomes()
    assert sum(usage["mutation_outcomes"].values()) == both.requests
    assert book[1]["llm_mutation"]["applied"] < book[2]["llm_mutation"]["applied"]
    assert "llm: 2 calls" in lines[-1] and "mutations" in lines[-1]
    checkpoint = json.loads((rundir.path / "checkpoint.json").read_text())
    assert checkpoint["llm_usage"]["mutation"]["prompt_tokens"] == both.prompt_tokens


def test_short_evolution_with_the_tiny_model_counts_its_mutations(
    tmp_path, tiny_model_dir, ray_runtime
):
    """The real model path end to end: built from the config in the driver, batched,
    closed. The tiny model's patches mostly fail; what matters is that every request is
    settled and counted, and the run goes on."""
    from personaevo.llm.config import LLMConfig

    config = run_config(tmp_path, "tiny", 1).model_copy(
        update={
            "llm": LLMConfig(backend="tiny"),  # the fixture's model
            "llm_mutation_rate": 1.0,
            "crossover_rate": 0.0,
            "llm_mutation_max_tokens": 48,
            "population": 2,
            "islands": 1,
        }
    )
    lines: list[str] = []
    evo, rundir, _ = run_evolution(config, log=lines.append)
    usage = json.loads((rundir.path / "llm_usage.json").read_text())
    assert usage["model"].startswith("transformers:")
    assert sum(usage["mutation_outcomes"].values()) == 2  # every request settled
    assert set(usage["mutation_outcomes"]) <= {*OUTCOMES, "duplicate"}
    assert 1 <= usage["mutation"]["calls"] <= 2  # the batch, and one for the retries
    assert usage["mutation"]["completion_tokens"] > 0
    assert logbook(rundir.path)[-1]["llm_mutation"] == usage["mutation_outcomes"]
    assert "llm: " in lines[-1]
    assert len(evo.islands) == 1 and len(evo.islands[0]) == 2


# ------------------------------------------------------------------ llm_two_stage.py

TWO_STAGE = next(p for p in seed_generator_paths() if p.stem == "llm_two_stage")


def test_two_stage_fills_descriptions_and_profiles_in_one_batched_call(customer_support, sandbox):
    def reply(prompt: str) -> str:
        patience = re.search(r"- patience: (\w+)", prompt).group(1)
        return (
            f"DESCRIPTION: I am someone whose patience is {patience}, and I say so plainly.\n"
            'PROFILE: {"name": "Ada", "occupation": "pilot", "city": "Leeds"}'
        )

    llm = ScriptedLLM(reply)
    result = sandbox.run(
        TWO_STAGE, generator_space(customer_support), n=30, seed=1, llm=ProgramLLM(llm)
    )
    assert result.ok, (result.failure, result.message, result.traceback)
    assert len(result.personas) == 30 and llm.usage.calls == 1 and llm.usage.requests == 30
    for persona in result.personas:
        patience = persona["traits"]["patience"]
        assert persona["description"].startswith(f"I am someone whose patience is {patience}")
        assert persona["profile"] == {"name": "Ada", "occupation": "pilot", "city": "Leeds"}
        assert customer_support.is_feasible(persona["traits"])


def test_two_stage_survives_malformed_replies_and_a_failing_model(customer_support, sandbox):
    replies = iter(
        [
            "",
            "ok",
            "DESCRIPTION: short",
            'PROFILE: {"name": ',
            "DESCRIPTION: I keep my answers short but I never give up on a refund.\n"
            "PROFILE:\nname: Bo\n- job: baker",
        ]
        * 10
    )
    llm = ScriptedLLM(lambda prompt: next(replies))
    result = sandbox.run(
        TWO_STAGE, generator_space(customer_support), n=10, seed=2, llm=ProgramLLM(llm)
    )
    assert result.ok, (result.failure, result.message, result.traceback)
    personas = result.personas
    assert len(personas) == 10 and all(p["description"] for p in personas)
    assert personas[0]["description"].startswith("My ")  # the template
    assert personas[4]["description"].startswith("I keep my answers short")
    assert personas[4]["profile"] == {"name": "Bo", "job": "baker"}
    assert "profile" not in personas[0]

    failing = sandbox.run(
        TWO_STAGE, generator_space(customer_support), n=10, seed=2, llm=ProgramLLM(Unreachable())
    )
    assert failing.ok and all(p["description"].startswith("My ") for p in failing.personas)
    plain = sandbox.run(TWO_STAGE, generator_space(customer_support), n=10, seed=2)
    assert [p["traits"] for p in plain.personas] == [p["traits"] for p in personas]
