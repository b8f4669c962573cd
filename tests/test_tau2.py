"""tau2-bench in and out: task files as goals, personas with goals as tau2 tasks, and the
user simulator served to a tau2-style harness over the OpenAI HTTP API.

Every file is written by the tests in tau2-bench's format. ``RETAIL_TASK`` and
``AIRLINE_TASK`` copy the shape of tasks "0" of ``data/tau2/domains/retail/tasks.json`` and
``data/tau2/domains/airline/tasks.json`` at sierra-research/tau2-bench commit
a2c024725189473d2d7cea3a5cfdbcc67478e41f, shortened (fewer actions).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from personaevo.cli import main
from personaevo.errors import FileFieldsError, InputError
from personaevo.personas import Persona
from personaevo.simulator import STOP, Simulator, load_goal_source, load_goals
from personaevo.simulator.goal_files import GoalTemplate, builtin_goal_path
from personaevo.simulator.goals import UnknownInfo
from personaevo.simulator.profiles import profile_from_persona
from personaevo.simulator.tau2 import (
    Tau2Task,
    Tau2UserScenario,
    read_tau2_file,
    read_tau2_tasks,
    write_tau2_scenarios,
)
from personaevo.simulator.tau2_server import ScenarioBook, UserSimulatorServer
from personaevo.simulator.tau2_text import parse_scenario_text

# tau2-bench a2c0247, data/tau2/domains/retail/tasks.json, task "0" (two of five actions)
RETAIL_TASK = {
    "id": "0",
    "description": {"purpose": None, "relevant_policies": None, "notes": None},
    "user_scenario": {
        "persona": None,
        "instructions": {
            "task_instructions": "You are detail-oriented and want to make sure everything "
            "is addressed in one go.",
            "domain": "retail",
            "reason_for_call": "You received your order #W2378156 and wish to exchange the "
            "mechanical keyboard for the same one but with clicky switches. If there is no "
            "keyboard that is clicky, RGB backlight, full size, you'd go for no backlight.",
            "known_info": "You are Yusuf Rossi in zip code 19122.",
            "unknown_info": "You do not remember your email address.",
        },
    },
    "initial_state": None,
    "evaluation_criteria": {
        "actions": [
            {
                "action_id": "0_0",
                "name": "find_user_id_by_name_zip",
                "arguments": {"first_name": "Yusuf", "last_name": "Rossi", "zip": "19122"},
                "info": None,
            },
            {
                "action_id": "0_1",
                "name": "get_order_details",
                "arguments": {"order_id": "#W2378156"},
                "info": None,
            },
        ],
        "communicate_info": [],
        "nl_assertions": None,
        "reward_basis": ["DB", "NL_ASSERTION"],
    },
}
# tau2-bench a2c0247, data/tau2/domains/airline/tasks.json, task "0" (shortened texts)
AIRLINE_TASK = {
    "id": "1",
    "description": {
        "purpose": "Testing that agent refuses to proceed with a cancellation that is not allowed.",
        "relevant_policies": None,
        "notes": None,
    },
    "user_scenario": {
        "persona": None,
        "instructions": {
            "task_instructions": "You don't want to cancel if you don't get a refund.",
            "domain": "airline",
            "reason_for_call": "You want to cancel reservation EHGLP3. \n\nIt may be more "
            "than 24 hours after booking.",
            "known_info": "You are Emma Kim.\nYour user id is emma_kim_9957.",
            "unknown_info": None,
        },
    },
    "initial_state": None,
    "evaluation_criteria": {
        "actions": [],
        "communicate_info": [],
        "nl_assertions": ["Agent should refuse to proceed with the cancellation."],
        "reward_basis": ["DB", "COMMUNICATE"],
    },
    "annotations": None,
}
# tau2's data/tau2/user_simulator/simulation_guidelines.md, its first lines
GUIDELINES = (
    "# User Simulation Guidelines\nYou are playing the role of a customer contacting a "
    "customer service representative.\n- If the instruction goal is satisified, generate the "
    "'###STOP###' token to end the conversation."
)
GREETING = "Hi! How can I help you today?"
RETAIL_TRAITS = {
    "domain": "retail",
    "patience": "low",
    "verbosity": "terse",
    "tech_literacy": "low",
    "emotional_state": "frustrated",
    "goal_clarity": "clear",
    "language_proficiency": "native",
    "accessibility_needs": "none",
    "trust_in_automation": "neutral",
    "age_band": "35-44",
}


def system_prompt(scenario: Tau2UserScenario) -> str:
    """tau2's user-simulator system prompt (``SYSTEM_PROMPT`` of user_simulator.py)."""
    return f"{GUIDELINES}\n\n<scenario>\n{scenario.render()}\n</scenario>"


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=4))
    return path


@pytest.fixture(scope="module")
def profiles(customer_support):
    personas = [
        Persona(id=f"p{i}", traits=RETAIL_TRAITS, description=f"Shopper {i}; hates waiting.")
        for i in range(3)
    ]
    return [profile_from_persona(p, customer_support, seed=0) for p in personas]


@pytest.fixture(scope="module")
def own_pairs(profiles):
    template = GoalTemplate.load(builtin_goal_path("template"))
    return [(p, template.compose(p, seed=0)) for p in profiles]


@pytest.fixture
def persona_file(tmp_path) -> Path:
    path = tmp_path / "personas.jsonl"
    rows = [{"id": f"p{i}", "traits": RETAIL_TRAITS} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- the format -----------------------------------------------------------------------------


def test_render_is_tau2s_str_of_a_user_scenario():
    scenario = Tau2UserScenario.model_validate(
        {
            "persona": "Polite.\nFirm.",
            "instructions": {
                "domain": "retail",
                "reason_for_call": "A.\n\nB.",
                "known_info": "K.",
                "unknown_info": None,
                "task_instructions": "T.",
            },
        }
    )
    expected = (
        "Persona:\n\tPolite.\n\tFirm.\nInstructions:\n\tDomain: retail\n\tReason for call:\n"
        "\t\tA.\n\n\t\tB.\n\tKnown info:\n\t\tK.\n\tTask instructions:\n\t\tT."
    )
    assert scenario.render() == expected
    assert parse_scenario_text(expected) == scenario
    plain = Tau2UserScenario(instructions="Call about your order.")
    assert plain.render() == "Instructions:\n\tCall about your order."
    assert parse_scenario_text(plain.render()) == plain
    assert parse_scenario_text("You are a helpful assistant.") is None


def test_tasks_import_as_goals_with_known_and_unknown_info(tmp_path):
    path = write(tmp_path / "tasks.json", [RETAIL_TASK, AIRLINE_TASK])
    retail, airline = read_tau2_tasks(path)
    assert retail.id == "0" and retail.instructions.domain == "retail"
    assert retail.instructions.known_info == {"info": "You are Yusuf Rossi in zip code 19122."}
    assert retail.instructions.unknown_info == [
        UnknownInfo(text="You do not remember your email address.")
    ]
    assert [i.text for i in retail.task_objectives] == [
        "You received your order #W2378156 and wish to exchange the mechanical keyboard for "
        "the same one but with clicky switches."
    ]
    assert len(retail.preferences) == 1
    assert retail.preferences[0].text.startswith("If there is no keyboard")
    assert retail.instructions.task_instructions.startswith("You are detail-oriented")
    assert airline.instructions.known_info == {
        "info": "You are Emma Kim.",
        "user_id": "emma_kim_9957",
    }
    assert airline.instructions.unknown_info == []
    assert len(airline.task_objectives) == 2
    # wherever goals are taken: detected by shape, or named with tau2:
    assert [g.id for g in load_goals(path)] == ["0", "1"]
    goals, template = load_goal_source(f"tau2:{path}")
    assert template is None and [g.id for g in goals] == ["0", "1"]
    single = write(tmp_path / "one.json", RETAIL_TASK)
    assert [g.id for g in load_goals(single)] == ["0"]
    scenarios = write(tmp_path / "scenarios.json", [RETAIL_TASK["user_scenario"]])
    assert [g.id for g in load_goal_source(scenarios)[0]] == ["scenarios-0"]


def test_export_reimports_to_the_same_goals_and_matches_the_schema(tmp_path, own_pairs):
    path = tmp_path / "tasks.json"
    tasks = write_tau2_scenarios(path, own_pairs)
    data = json.loads(path.read_text())
    assert [t["id"] for t in data] == [t.id for t in tasks] == [g.id for _, g in own_pairs]
    for raw, (profile, goal) in zip(data, own_pairs, strict=True):
        assert Tau2Task.model_validate(raw).id == raw["id"]
        scenario = raw["user_scenario"]
        assert set(scenario) == {"persona", "instructions"}
        assert set(scenario["instructions"]) == {
            "domain",
            "reason_for_call",
            "known_info",
            "unknown_info",
            "task_instructions",
        }
        assert all(isinstance(v, str) for v in scenario["instructions"].values())
        assert scenario["persona"].startswith(f"Profile: name={profile.facts['name']}; ")
        assert (
            f"Your order id is {goal.instructions.known_info['order_id']}."
            in (scenario["instructions"]["known_info"])
        )
        assert raw["evaluation_criteria"]["reward_basis"] == ["NL_ASSERTION"]
    # the exact goals come back while the scenarios are unedited
    back = read_tau2_tasks(path)
    assert back == [goal for _, goal in own_pairs]
    # without the personaevo key the goal is read from the text, and writes the same text
    for raw in data:
        del raw["personaevo"]
    write(path, data)
    derived = read_tau2_tasks(path)
    for goal, (_, original) in zip(derived, own_pairs, strict=True):
        assert goal.instructions.known_info == original.instructions.known_info
        assert [u.text for u in goal.instructions.unknown_info] == [
            u.text for u in original.instructions.unknown_info
        ]
        assert goal.instructions.reason_for_call == original.instructions.reason_for_call
        assert goal.task_objectives[0].complete_when == []  # patterns live in the key only
    again = write_tau2_scenarios(
        tmp_path / "again.json", list(zip([p for p, _ in own_pairs], derived, strict=True))
    )
    assert [t.user_scenario for t in again] == [
        Tau2UserScenario.model_validate(raw["user_scenario"]) for raw in data
    ]


def test_an_edited_scenario_is_read_from_its_text(tmp_path, own_pairs):
    path = tmp_path / "tasks.json"
    write_tau2_scenarios(path, own_pairs[:1])
    data = json.loads(path.read_text())
    data[0]["user_scenario"]["instructions"]["reason_for_call"] = "Your lamp is missing."
    write(path, data)
    (goal,) = read_tau2_tasks(path)
    assert goal.instructions.reason_for_call == "Your lamp is missing."
    assert [i.text for i in goal.task_objectives] == ["Your lamp is missing."]


def test_tau2_tasks_with_personas_keep_their_instructions_and_criteria(tmp_path, persona_file):
    goals = write(tmp_path / "retail.json", [RETAIL_TASK, AIRLINE_TASK])
    out = tmp_path / "with_personas.json"
    argv = ["export-tau2", "--personas", str(persona_file), "--space", "customer_support"]
    argv += ["--goals", str(goals), "--pairing", "per-goal", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert [t["id"].split(":")[0] for t in data] == ["0", "1"]
    for task, original in zip(data, [RETAIL_TASK, AIRLINE_TASK], strict=True):
        assert task["evaluation_criteria"] == original["evaluation_criteria"]
        assert task["description"] == original["description"]
        instructions = task["user_scenario"]["instructions"]
        assert instructions == original["user_scenario"]["instructions"]
    assert "annotations" in data[1]
    # the persona takes the identity the task's known information states
    assert data[0]["user_scenario"]["persona"].startswith("Profile: name=Yusuf Rossi; ")
    assert "zip_code=19122" in data[0]["user_scenario"]["persona"]
    assert "user_id=emma_kim_9957" in data[1]["user_scenario"]["persona"]
    # deterministic given the seed, and the file is not overwritten without --force
    assert main(argv) == 2
    first = out.read_text()
    assert main([*argv, "--force"]) == 0 and out.read_text() == first


def test_per_persona_export_from_the_cli(tmp_path, persona_file, capsys):
    out = tmp_path / "tasks.json"
    argv = ["export-tau2", "--personas", str(persona_file), "--space", "customer_support"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "wrote 3 tau2-bench tasks (3 personas, 3 goals)" in capsys.readouterr().out
    assert [t.id.split(":")[-1] for t in read_tau2_file(out)] == ["p0", "p1", "p2"]


BAD_FILES = [
    (
        [RETAIL_TASK, {"id": "7", "user_scenario": {"instructions": {"domain": "retail"}}}],
        "tasks[1] (id 7).user_scenario.instructions.reason_for_call: Field required",
    ),
    (
        [{**RETAIL_TASK, "id": 3}],
        "tasks[0] (id 3).id: Input should be a valid string",
    ),
    (
        [{"id": "x", "user_scenario": {"persona": None, "instructions": 5}}],
        "tasks[0] (id x).user_scenario.instructions: Input should be a valid dictionary",
    ),
    (
        [RETAIL_TASK, {"id": "y", "user_scenario": {"instructions": "  "}}],
        "tasks[1] (id y).user_scenario.instructions: empty: a goal needs a reason for the call",
    ),
    ([RETAIL_TASK, RETAIL_TASK], "id: duplicate task ids ['0']"),
    ({"user_scenario": "call us"}, "tasks[0].user_scenario: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_FILES)
def test_bad_tau2_files_exit_2_naming_the_task_and_field(
    tmp_path, persona_file, capsys, data, expected
):
    path = write(tmp_path / "tasks.json", data)
    out = tmp_path / "out.json"
    argv = ["export-tau2", "--personas", str(persona_file), "--goals", f"tau2:{path}"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {expected}" in err
    assert not out.exists()
    with pytest.raises((FileFieldsError, InputError)):
        read_tau2_tasks(path)


# --- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_simulator(tiny_model_dir):
    from personaevo.llm import SamplingParams
    from personaevo.simulator import open_model

    return Simulator(open_model("tiny"), SamplingParams(max_tokens=32, temperature=0.0))


@pytest.fixture
def serve(tiny_simulator):
    started = []

    def start(book: ScenarioBook, max_turns: int = 20) -> openai.OpenAI:
        server = UserSimulatorServer(tiny_simulator, book, port=0, max_turns=max_turns).start()
        started.append(server)
        return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)

    yield start
    for server in started:
        server.stop()


def _converse(client, model, scenario, agent_lines):
    """Play tau2's side: the agent's lines as role user, the replies as role assistant."""
    messages = [{"role": "system", "content": system_prompt(scenario)}]
    replies = []
    for agent in agent_lines:
        messages.append({"role": "user", "content": agent})
        reply = client.chat.completions.create(model=model, messages=messages, temperature=0.0)
        replies.append(reply)
        line = reply.choices[0].message.content
        if STOP in line:
            break
        messages.append({"role": "assistant", "content": line})
    return replies


def test_server_plays_the_user_of_a_tau2_request(serve, profiles):
    client = serve(ScenarioBook(profiles=profiles))
    names = [m.id for m in client.models.list().data]
    assert names == [
        "personaevo-user",
        "personaevo-user/p0",
        "personaevo-user/p1",
        "personaevo-user/p2",
    ]
    scenario = Tau2Task.model_validate(RETAIL_TASK).user_scenario
    (reply,) = _converse(client, "personaevo-user", scenario, [GREETING])
    line = reply.choices[0].message.content
    assert line.strip() and reply.choices[0].message.role == "assistant"
    assert reply.object == "chat.completion" and reply.model == "personaevo-user"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    info = reply.model_extra["personaevo"]
    # no persona in the task: one of --personas, drawn by the scenario, with its identity
    assert info["persona_id"] in {"p0", "p1", "p2"} and info["intent"] == "request"
    assert info["goal_id"].startswith("scenario-")
    (again,) = _converse(client, "personaevo-user", scenario, [GREETING])
    assert again.model_extra["personaevo"]["persona_id"] == info["persona_id"]
    (chosen,) = _converse(client, "personaevo-user/p2", scenario, [GREETING])
    assert chosen.model_extra["personaevo"]["persona_id"] == "p2"


def test_a_conversation_at_its_turn_budget_ends_with_stop(serve):
    client = serve(ScenarioBook(), max_turns=3)
    scenario = Tau2Task.model_validate(AIRLINE_TASK).user_scenario
    agent = [GREETING, "Could you give me your user id?", "Let me check that.", "One moment."]
    replies = _converse(client, "personaevo-user", scenario, agent)
    assert len(replies) == 3
    lines = [r.choices[0].message.content for r in replies]
    assert [r.model_extra["personaevo"]["intent"] != "end" for r in replies[:2]] == [True, True]
    assert STOP not in " ".join(lines[:2]) and lines[-1].endswith(STOP)
    assert replies[-1].model_extra["personaevo"]["intent"] == "end"


def test_a_done_goal_ends_with_stop_before_the_budget(serve, own_pairs, tmp_path):
    path = tmp_path / "tasks.json"
    tasks = write_tau2_scenarios(path, own_pairs[:1])
    profile, goal = own_pairs[0]
    client = serve(ScenarioBook(read_tau2_file(path)), max_turns=20)
    examples = [i.agent_example for i in [*goal.requirements, *goal.task_objectives]]
    replies = _converse(client, "personaevo-user", tasks[0].user_scenario, [GREETING, *examples])
    assert len(replies) == 1 + len(examples)
    last = replies[-1]
    assert last.choices[0].message.content.endswith(STOP)
    info = last.model_extra["personaevo"]
    assert info["intent"] == "end" and info["persona_id"] == profile.persona_id
    assert info["goal_id"] == goal.id and "[Complete]" in info["goal_state"]


def test_server_transfer_and_bad_requests(serve, own_pairs):
    client = serve(ScenarioBook())
    scenario = Tau2Task.model_validate(RETAIL_TASK).user_scenario
    transfer = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."
    replies = _converse(client, "personaevo-user", scenario, [transfer])
    assert replies[0].choices[0].message.content == "###TRANSFER###"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="no system message"):
        client.chat.completions.create(
            model="personaevo-user", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.BadRequestError, match="no tau2 user scenario"):
        client.chat.completions.create(
            model="personaevo-user",
            messages=[{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}],
        )


def test_serve_simulator_command_answers_over_http(tmp_path, tiny_model_dir, persona_file):
    tasks = write(tmp_path / "tasks.json", [RETAIL_TASK])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with socket.socket() as probe:  # a free port (--port takes 1 to 65535)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "personaevo.cli", "serve-simulator", "--port", str(port)]
    argv += ["--tasks", str(tasks), "--personas", str(persona_file)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    try:
        banner, hint = proc.stdout.readline(), proc.stdout.readline()
        assert banner.startswith("serving user simulator tiny as model 'personaevo-user' at ")
        assert "(1 tasks, 3 personas)" in banner
        url = banner.split(" at ")[1].split(" ")[0]
        assert url == f"http://127.0.0.1:{port}/v1"
        assert f'--user-llm openai/personaevo-user --user-llm-args \'{{"api_base": "{url}"' in hint
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        scenario = Tau2Task.model_validate(RETAIL_TASK).user_scenario
        (reply,) = _converse(client, "personaevo-user", scenario, [GREETING])
        assert reply.choices[0].message.content.strip()
        assert reply.model_extra["personaevo"]["goal_id"] == "0"  # found in --tasks
    finally:
        proc.terminate()
        proc.wait(timeout=10)
