"""Assessors of free-text personas: embeddings against anchors, Likert questionnaires,
and their plumbing through evaluation, the command line and evolution."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personaevo.assess import make_assessor, unit_to_native
from personaevo.assess.embedding import anchor_texts, split_sentences
from personaevo.assess.questionnaire import QuestionnaireAssessor, parse_answer
from personaevo.cli import main as cli_main
from personaevo.errors import InputError
from personaevo.evaluate import evaluate_programs, seed_generator_paths
from personaevo.llm.base import LLM, Completion, ScriptedLLM
from personaevo.metrics import score
from personaevo.personas import check_personas
from personaevo.spaces import load_space, space_from_data

SPACES = ["customer_support", "big_five", "mental_health_support"]


@pytest.fixture(scope="module")
def embedding():
    """One embedding assessor (and model load) for the whole module."""
    return make_assessor("embedding")


def _clause(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _persona(pid: str, description: str | None, **traits) -> dict:
    record = {"id": pid, "traits": traits}
    if description is not None:
        record["description"] = description
    return record


# ----------------------------------------------------------------------- space files


@pytest.mark.parametrize("space_name", SPACES)
def test_builtin_spaces_declare_items_and_choice_texts(space_name):
    space = load_space(space_name)
    for axis in space.axes:
        if axis.kind == "categorical":
            assert set(axis.value_anchors) == set(axis.choices), axis.name
            assert not axis.items
        else:
            assert len(axis.items) >= 3 and axis.low_anchor and axis.high_anchor, axis.name
            assert any(i.reverse for i in axis.items) and any(not i.reverse for i in axis.items)


def test_item_and_choice_text_errors_name_the_field(tiny_data):
    tiny_data["axes"][1]["items"] = ["I feel good.", {"text": "I feel bad.", "reverse": True}]
    assert [i.reverse for i in space_from_data(tiny_data).axes[1].items] == [False, True]
    bad = [
        ({"items": ["A student."]}, "axes.2: Likert items need an ordered axis"),
        ({"value_anchors": {"pilot": "Flies."}}, "axes.2: value_anchors name unknown choices"),
    ]
    for extra, message in bad:
        data = {**tiny_data, "axes": [*tiny_data["axes"][:2], {**tiny_data["axes"][2], **extra}]}
        with pytest.raises(InputError, match=message):
            space_from_data(data, "s.yaml")
    tiny_data["axes"][0]["items"] = [{"text": "", "reverse": True}]
    with pytest.raises(InputError, match=re.escape("axes.0.items.0.text")):
        space_from_data(tiny_data, "s.yaml")


# ------------------------------------------------------------------------ embedding


def test_sentences_and_anchor_defaults(tiny):
    assert split_sentences("One. Two!  Three?\nFour\n\n five ") == [
        "One.",
        "Two!",
        "Three?",
        "Four",
        "five",
    ]
    mood = tiny.axis_by_name["mood"]  # no anchors: the end levels stand in
    assert anchor_texts(mood) == ["mood: low.", "mood: high."]
    assert unit_to_native(tiny.axis_by_name["age"], 0.25) == 25.0
    assert [unit_to_native(mood, u) for u in (0.0, 0.24, 0.26, 0.74, 1.0)] == [
        "low",
        "low",
        "mid",
        "mid",
        "high",
    ]


@pytest.mark.parametrize("space_name", SPACES)
def test_embedding_orders_low_and_high_texts_on_every_axis(space_name, embedding):
    """Every ordered axis: anchors land exactly on 0 and 1; a paraphrase of the low anchor
    reads low and one of the high anchor high, alone and inside a persona that mixes
    axes (low on even axes, high on odd ones, and the mirror image). Every categorical
    axis: a sentence built on a choice's text reads as that choice."""
    space = load_space(space_name)
    ordered = [a for a in space.axes if a.kind != "categorical"]
    anchors = []
    for axis in ordered:
        low, high = anchor_texts(axis)
        anchors += [_persona(f"{axis.name}-L", low), _persona(f"{axis.name}-H", high)]
        anchors += [
            _persona(f"{axis.name}-l", f"I am calling today. Honestly, {_clause(low)}."),
            _persona(f"{axis.name}-h", f"I am calling today. Honestly, {_clause(high)}."),
        ]
    found = {m.id: m.positions for m in embedding.measure(anchors, space).measurements}
    for axis in ordered:
        assert found[f"{axis.name}-L"][axis.name] == pytest.approx(0.0, abs=1e-4)
        assert found[f"{axis.name}-H"][axis.name] == pytest.approx(1.0, abs=1e-4)
        assert found[f"{axis.name}-l"][axis.name] < 0.35, axis.name
        assert found[f"{axis.name}-h"][axis.name] > 0.65, axis.name

    def mixed(flip: int) -> str:
        ends = [anchor_texts(a)[(i + flip) % 2] for i, a in enumerate(ordered)]
        return " ".join(f"People say this about me: {_clause(t)}." for t in ends)

    a, b = embedding.measure([_persona("a", mixed(0)), _persona("b", mixed(1))], space).records
    for i, axis in enumerate(ordered):
        native = [a["traits"][axis.name], b["traits"][axis.name]]
        rank = [axis.levels.index(v) for v in native] if axis.kind == "ordinal" else native
        assert (rank[0] < rank[1]) == (i % 2 == 0), (axis.name, native)

    for axis in (a for a in space.axes if a.kind == "categorical"):
        texts = anchor_texts(axis)
        personas = [
            _persona(c, f"About me: {_clause(t)}.")
            for c, t in zip(axis.choices, texts, strict=True)
        ]
        records = embedding.measure(personas, space).records
        assert [r["traits"][axis.name] for r in records] == axis.choices, axis.name


def test_persona_without_text_is_invalid_under_a_text_assessor(customer_support, embedding):
    traits = {
        "domain": "retail",
        "patience": "medium",
        "verbosity": "brief",
        "tech_literacy": "high",
        "emotional_state": "calm",
        "goal_clarity": "clear",
        "language_proficiency": "native",
        "accessibility_needs": "none",
        "trust_in_automation": "neutral",
        "age_band": "35-44",
    }
    personas = [
        _persona("silent", None, **traits),
        _persona("blank", "   \n ", **traits),
        _persona("speaks", "Waits calmly through long holds. Calm and relaxed.", **traits),
    ]
    assert score(personas, customer_support, n_probes=200).validity == 1.0  # explicit
    measured = embedding.measure(personas, customer_support)
    report = score(measured.records, customer_support, n_probes=200)
    assert report.n_valid == 1
    assert report.invalid_reasons == {"unmeasured: no text": 2}
    assert measured.summary.unmeasured == {"no text": 2}
    kept = measured.records[2]
    assert kept["declared_traits"] == traits and kept["traits"]["patience"] in ("high", "very_high")


# -------------------------------------------------------------------- questionnaire

QSPACE = {
    "name": "q",
    "context": "A toy population with a questionnaire.",
    "axes": [
        {
            "name": "age",
            "kind": "continuous",
            "low": 0,
            "high": 100,
            "items": ["I am old.", {"text": "I am young.", "reverse": True}],
        },
        {
            "name": "mood",
            "kind": "ordinal",
            "levels": ["low", "mid", "high"],
            "items": [
                "I am cheerful.",
                "I am in a good mood.",
                {"text": "I feel down.", "reverse": True},
                {"text": "I am gloomy.", "reverse": True},
            ],
        },
        {"name": "job", "kind": "categorical", "choices": ["student", "worker", "retired"]},
    ],
}


class PersonaAnswers(LLM):
    """Answers from the persona's text (the system turn): ``level K`` agrees to degree K
    with forward items and 6 - K with reverse ones; ``same K`` answers K to everything;
    ``garble mood N`` answers the first N mood items with ``"4."`` (unparsable)."""

    def __init__(self) -> None:
        super().__init__()
        self.seeds: list[int | None] = []

    def _chat(self, conversations, params):
        self.seeds.append(params.seed)
        replies, asked = [], {}
        items = {i.text: (i, a.name) for a in space_from_data(QSPACE).axes for i in a.items}
        for conv in conversations:
            system, user = conv[0].content, conv[-1].content
            item, axis = items[user.split('"')[1]]
            asked[system, axis] = asked.get((system, axis), 0) + 1
            garble = re.search(r"garble mood (\d)", system)
            if garble and axis == "mood" and asked[system, axis] <= int(garble[1]):
                replies.append("4.")
                continue
            same = re.search(r"same (\d)", system)
            if same:
                answer = int(same[1])
            else:
                level = int(re.search(r"level (\d)", system)[1])
                answer = 6 - level if item.reverse else level
            replies.append(f" {answer}\n")
        return [Completion(text=r, prompt_tokens=3, completion_tokens=1) for r in replies]

    def _complete(self, prompts, params):
        raise NotImplementedError


def test_answers_are_parsed_strictly():
    assert [parse_answer(r) for r in ("1", " 5\n", "\t3 ")] == [1, 5, 3]
    for reply in ("4.", "I'd say 4", "6", "0", "", "4 5", "four", "44", "-1"):
        assert parse_answer(reply) is None, reply


def test_questionnaire_keys_scales_batches_and_keeps_categorical_values():
    space = space_from_data(QSPACE)
    llm = PersonaAnswers()
    personas = [
        _persona("top", "I am level 5 here.", age=10.0, mood="low", job="worker"),
        _persona("bottom", "I am level 1 here.", age=90.0, mood="high", job="student"),
        _persona("middle", "I am level 3 here.", age=0.0, mood="low", job="retired"),
        _persona("yes", "I say same 5 always.", age=0.0, mood="low", job="worker"),
        _persona("half", "I am level 5 but garble mood 2.", age=0.0, mood="low", job="worker"),
        _persona("most", "I am level 5 but garble mood 3.", age=0.0, mood="low", job="worker"),
        _persona("mute", None, age=0.0, mood="low", job="worker"),
    ]
    measured = QuestionnaireAssessor(llm).measure(personas, space, seed=11)
    by_id = {m.id: m for m in measured.measurements}
    traits = {r["id"]: r["traits"] for r in measured.records if isinstance(r, dict)}
    assert traits["top"] == {"age": 100.0, "mood": "high", "job": "worker"}
    assert traits["bottom"] == {"age": 0.0, "mood": "low", "job": "student"}
    assert traits["middle"] == {"age": 50.0, "mood": "mid", "job": "retired"}
    # agreeing with everything: forward items score 5, reverse-keyed ones 6 - 5 = 1
    assert by_id["yes"].positions == {"age": 0.5, "mood": 0.5}
    # 2 of 4 mood answers parsed: measured from those two; 1 of 4: unmeasured
    assert by_id["half"].positions["mood"] == 1.0 and by_id["half"].reason is None
    assert by_id["most"].reason == "unparsed answers"
    assert by_id["mute"].reason == "no text"
    checked = check_personas(measured.records, space)
    assert len(checked.valid) == 5
    reasons = {p.id: p.reasons[0] for p in checked.invalid}
    assert reasons == {
        "most": "unmeasured: unparsed answers: mood: 1 of 4 answers parsed",
        "mute": "unmeasured: no text: no description or profile",
    }
    # one batched call: every persona with text, every item, sampled with the seed
    assert llm.usage.calls == 1 and llm.usage.requests == 6 * 6 and llm.seeds == [11]
    detail = measured.summary.detail
    assert detail["answers"] == 36 and detail["parsed"] == 36 - 5
    assert detail["unparsed_examples"] == ["4."]


def test_questionnaire_survives_a_failing_model_and_needs_items(tiny):
    class Down(ScriptedLLM):
        def _chat(self, conversations, params):
            raise ConnectionError("http://127.0.0.1:9/v1 unreachable")

    space = space_from_data(QSPACE)
    personas = [_persona("a", "I am level 5.", age=1.0, mood="low", job="worker")]
    measured = QuestionnaireAssessor(Down(str)).measure(personas, space)
    assert measured.summary.unmeasured == {"llm error": 1}
    assert "unreachable" in measured.summary.detail["error"]
    with pytest.raises(InputError, match="no Likert items"):
        QuestionnaireAssessor(PersonaAnswers()).measure(personas, tiny)
    with pytest.raises(InputError, match="needs a language model"):
        make_assessor("questionnaire")


# ---------------------------------------------------------- evaluation and the CLI

ASKING_PROGRAM = """
def generate(space, n, rng, llm=None):
    reply = llm.chat([{"role": "user", "content": "Describe someone."}], max_tokens=9)
    return [
        {"id": str(i), "traits": {"age": 50.0, "mood": "mid", "job": "worker"},
         "description": reply + " level " + str(1 + i % 5) + "."}
        for i in range(n)
    ]
"""


def test_programs_get_the_model_and_evaluations_count_its_calls():
    """The program calls the model through the sandbox's proxy; the questionnaire asks
    the same model; the evaluation records both calls."""
    space = space_from_data(QSPACE)
    llm = PersonaAnswers()
    original = llm._chat

    def chat(conversations, params):  # the program's request is not a questionnaire item
        if conversations[0][-1].content == "Describe someone.":
            assert params.max_tokens == 9
            return [Completion(text="A person at", completion_tokens=3)]
        return original(conversations, params)

    llm._chat = chat
    (evaluation,) = evaluate_programs(
        [ASKING_PROGRAM], space, n=10, llm=llm, assess="questionnaire", n_probes=200
    )
    assert evaluation.ok, (evaluation.failure, evaluation.message, evaluation.traceback)
    assert evaluation.assessment.method == "questionnaire"
    assert evaluation.assessment.detail["parse_rate"] == 1.0
    assert evaluation.llm_usage.calls == 2 and evaluation.llm_usage.requests == 1 + 10 * 6
    assert evaluation.report.n_valid == 10


def test_score_cli_measures_text_generators_by_embedding(tmp_path, capsys):
    out = tmp_path / "evals.json"
    code = cli_main(
        [
            "score",
            "--assess",
            "embedding",
            "--space",
            "mental_health_support",
            "--n",
            "40",
            "--probes",
            "500",
            "--workers",
            "1",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    evaluations = json.loads(out.read_text())["evaluations"]
    names = {e["program"] for e in evaluations}
    assert {"phrase_bank", "phrase_sobol"} <= names
    assert names <= {p.stem for p in seed_generator_paths("embedding")}
    for e in evaluations:
        assert e["assessment"]["method"] == "embedding"
        assert e["assessment"]["measured"] == 40
        assert e["report"]["n_valid"] > 20, e["program"]
        # the measured positions, not the declared ones, were scored
        assert e["report"]["validity"] < 1.0 or e["program"] == "llm_two_stage"
    assert "embedding measured 40 of 40" in printed


def test_score_personas_cli_assess_and_bad_input(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": "1", "traits": {}, "description": "Very old. No thoughts of suicide."},
        {"id": "2", "traits": {}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report_file = tmp_path / "r.json"
    args = ["score-personas", str(path), "--space", "big_five", "--probes", "300"]
    rows_file = tmp_path / "measured.jsonl"
    code = cli_main(
        [*args, "--assess", "embedding", "--json", str(report_file), "--measured", str(rows_file)]
    )
    assert code == 0
    report = json.loads(report_file.read_text())
    assert report["n_valid"] == 1 and report["invalid_reasons"] == {"unmeasured: no text": 1}
    assert report["assessment"]["method"] == "embedding"
    measured, silent = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert measured["traits"]["age"] == 90.0 and measured["declared_traits"] == {}
    assert set(measured["measurement"]["detail"]["relevance"]) == set(
        load_space("big_five").axis_names
    )
    assert silent == {
        "id": "2",
        "unmeasured": "no text: no description or profile",
        "measurement": {"reason": "no text"},
    }
    # declared traits alone: both records lack every axis, so no persona is valid (exit 1)
    assert cli_main(args) == 1
    assert "none of the 2 personas is valid" in capsys.readouterr().out
    spaceless = tmp_path / "noitems.yaml"
    spaceless.write_text(json.dumps(QSPACE | {"axes": [QSPACE["axes"][2]]}))
    code = cli_main(
        ["score-personas", str(path), "--space", str(spaceless), "--assess", "questionnaire"]
    )
    assert code == 2
    assert "no Likert items" in capsys.readouterr().err


# -------------------------------------------------------------------------- evolution


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray for this module's evaluators (they leave a running Ray up)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_evolution_under_embedding_assessment_runs_end_to_end(tmp_path, ray_runtime):
    from personaevo.evolution import EvolveConfig, run_evolution

    config = EvolveConfig(
        space="customer_support",
        assess="embedding",
        generations=1,
        population=3,
        islands=1,
        workers=1,
        n=30,
        probes=300,
        seed=1,
        out=str(tmp_path / "run"),
    )
    evo, rundir, _ = run_evolution(config, log=lambda line: None)
    assert {s.name for s in evo.seeds} == {p.stem for p in seed_generator_paths("embedding")}
    lines = [json.loads(x) for x in (rundir.path / "evaluations.jsonl").read_text().splitlines()]
    assert len(lines) == evo.evaluations >= 4
    measured = [x["evaluation"] for x in lines if x["evaluation"]["report"] is not None]
    assert measured and all(e["assessment"]["method"] == "embedding" for e in measured)
    assert any(e["ok"] and e["report"]["n_valid"] > 0 for e in measured)
    assert len(evo.front) >= 1
    assert Path(rundir.path / "config.yaml").read_text().count("assess: embedding") == 1


def test_ray_actors_build_the_model_and_return_its_usage(ray_runtime):
    from personaevo.evolution import RayEvaluator

    space = space_from_data(QSPACE)

    def build():  # runs inside the actor: a closure, shipped by value
        def reply(statement: str) -> str:
            return "5" if "old" in statement or "cheerful" in statement else "2"

        return ScriptedLLM(reply, name="scripted-in-actor")

    evaluator = RayEvaluator(
        space, None, workers=1, n=8, n_probes=200, assess="questionnaire", llm=build
    )
    evaluator.start()
    try:
        (evaluation,) = evaluator.evaluate([("k1", ASKING_PROGRAM, "asking")]).values()
    finally:
        evaluator.close()
    assert evaluation.ok, (evaluation.failure, evaluation.message, evaluation.traceback)
    assert evaluation.llm_usage.calls == 2 and evaluation.llm_usage.requests == 1 + 8 * 6
    assert evaluation.assessment.detail["llm"] == "scripted-in-actor"
    # age: "old" 5, reverse "young" 2 -> 4: u = (4.5 - 1) / 4
    assert evaluation.report.n_valid == 8


# ----------------------------------------------------------------------- tiny model


def test_tiny_model_answers_the_questionnaire_with_digits(tiny_model_dir, tmp_path, capsys):
    """The project's tiny model, through the real transformers backend and the CLI: most
    answers parse (its accuracy is not the point)."""
    from personaevo.llm.factory import build_llm

    folder = tiny_model_dir

    space = load_space("mental_health_support")
    personas = [
        _persona(str(i), text)
        for i, text in enumerate(
            [
                "I am fifteen and everything feels too much. I have no one to talk to.",
                "Retired teacher, calm and doing fine, with a big family around me.",
                "I drink too much since I lost my job, and lately I think about ending it.",
            ]
        )
    ]
    llm = build_llm(f"transformers:{folder}")
    measured = QuestionnaireAssessor(llm).measure(personas, space, seed=3)
    items = sum(len(a.items) for a in space.axes)
    assert llm.usage.calls == 1 and llm.usage.requests == 3 * items
    assert measured.summary.detail["parse_rate"] >= 0.9, measured.summary.detail
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in personas))
    args = ["score-personas", str(path), "--space", "mental_health_support", "--probes", "300"]
    # the space's categorical axes have no Likert items, so no measured persona is
    # complete: the command says so and exits 1
    assert cli_main([*args, "--assess", "questionnaire", "--llm", f"transformers:{folder}"]) == 1
    out = capsys.readouterr().out
    assert "questionnaire measured" in out and "none of the 3 personas is valid" in out
