"""The evolution loop on a real Ray runtime: determinism, resume after kill -9, cache."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personaevo.evolution import EvolveConfig, run_evolution

SMALL = {
    "space": "mental_health_support",
    "generations": 3,
    "population": 5,
    "islands": 2,
    "migration_interval": 1,
    "migrants": 1,
    "n": 40,
    "probes": 500,
    "seed": 3,
}


def _front(run: Path) -> list[str]:
    state = json.loads((run / "checkpoint.json").read_text())
    return sorted(e["key"] for e in state["front"])


def _run(tmp_path: Path, name: str, **extra) -> tuple:
    config = EvolveConfig(**{**SMALL, **extra, "out": str(tmp_path / name)})
    return run_evolution(config, log=lambda line: None)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evo")
    evo, rundir, _ = _run(tmp, "w2", workers=2)
    return evo, rundir


def test_same_seed_same_front_with_one_and_two_workers(reference_run, tmp_path):
    evo2, rundir2 = reference_run
    evo1, rundir1, _ = _run(tmp_path, "w1", workers=1)
    assert _front(rundir1.path) == _front(rundir2.path)
    assert [[i.key for i in isl] for isl in evo1.islands] == [
        [i.key for i in isl] for isl in evo2.islands
    ]


def test_run_directory_contents_and_cache(reference_run):
    evo, rundir = reference_run
    lines = [json.loads(x) for x in (rundir.path / "evaluations.jsonl").read_text().splitlines()]
    hashes = [x["hash"] for x in lines]
    assert len(hashes) == len(set(hashes)) == evo.evaluations  # never evaluated twice
    assert all((rundir.path / "programs" / f"{h}.py").exists() for h in hashes)
    assert len((rundir.path / "logbook.jsonl").read_text().splitlines()) == SMALL["generations"] + 1
    assert sorted(p.name for p in (rundir.path / "front").iterdir())
    operators = {x["operator"] for x in lines}
    assert "seed" in operators and len(operators) > 2
    for x in lines:
        if x["operator"] != "seed":
            assert x["parents"], x


def test_migration_moves_individuals_between_islands(tmp_path):
    evo, _, _ = _run(tmp_path, "mig", workers=2, generations=1, migration_interval=1, migrants=2)
    before = [{i.key for i in isl} for isl in evo.islands]
    import numpy as np  # noqa: F401
    from deap import tools

    tools.migRing(evo.islands, 2, selection=tools.selNSGA2)
    after = [{i.key for i in isl} for isl in evo.islands]
    moved = (after[0] - before[0]) | (after[1] - before[1])
    assert moved and moved <= before[0] | before[1]


def test_resume_after_kill_equals_uninterrupted_run(reference_run, tmp_path):
    _, rundir2 = reference_run
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "personaevo.cli",
        "evolve",
        "--space",
        SMALL["space"],
        "--generations",
        "3",
        "--population",
        "5",
        "--islands",
        "2",
        "--n",
        "40",
        "--seed",
        "3",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    config = {**SMALL, "out": str(out), "workers": 2}
    cfg_path = tmp_path / "run.yaml"
    EvolveConfig(**config).save(cfg_path)
    proc = subprocess.Popen(
        [*args[:4], "--config", str(cfg_path)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ckpt = out / "checkpoint.json"
        if ckpt.exists() and json.loads(ckpt.read_text())["generation"] >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no checkpoint in time")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "checkpoint.json").read_text())["generation"] < 3
    resumed = subprocess.run(
        [*args[:4], "--resume", str(out)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    assert _front(out) == _front(rundir2.path)


def test_killed_ray_worker_does_not_stop_evaluation():
    import threading

    from personaevo.evolution import RayEvaluator
    from personaevo.spaces import load_space

    space = load_space("big_five")
    slow = (
        "def generate(space, n, rng, llm=None):\n"
        "    total = 0\n"
        "    for i in range(20_000_000):\n"
        "        total += i\n"
        "    return [{'id': str(k), 'traits': {'openness': 50.0, 'conscientiousness': 50.0,\n"
        "        'extraversion': 50.0, 'agreeableness': 50.0, 'neuroticism': float(k % 100),\n"
        "        'age': 40.0, 'gender': 'female', 'education': 'college_degree'}}\n"
        "        for k in range(n)]\n"
    )
    tasks = [(f"t{i}", slow + f"# {i}\n", f"slow{i}") for i in range(4)]
    evaluator = RayEvaluator(space, None, workers=2, n=10, n_probes=200, eval_timeout=60)
    evaluator.start()
    try:
        victim = evaluator.actor_pids()[0]
        killer = threading.Timer(1.0, os.kill, args=(victim, signal.SIGKILL))
        killer.start()
        results = evaluator.evaluate(tasks)
        killer.join()
    finally:
        evaluator.close()
    assert set(results) == {key for key, _, _ in tasks}
    assert all(e.ok and e.report.n_valid == 10 for e in results.values()), results
    assert evaluator.restarts >= 1


BUSY = "def generate(space, n, rng, llm=None):\n    while True:\n        pass\n"

WAITING = (
    "def generate(space, n, rng, llm=None):\n"
    "    word = llm.chat([{'role': 'user', 'content': 'a gender'}])\n"
    "    return [{'id': str(k), 'traits': {'openness': 50.0, 'conscientiousness': 50.0,\n"
    "        'extraversion': 50.0, 'agreeableness': 50.0, 'neuroticism': float(k),\n"
    "        'age': 40.0, 'gender': word, 'education': 'college_degree'}}\n"
    "        for k in range(n)]\n"
)


def test_cpu_budget_stops_a_busy_program_but_not_one_waiting_on_the_model():
    """The CPU budget (1 s here) fails a spinning program as a timeout long before the
    60 s wall limit, while a program that waits 3 s on its language model, using no CPU,
    is not charged for the wait."""
    from personaevo.evolution import RayEvaluator
    from personaevo.spaces import load_space

    def slow_model():  # runs inside the actor
        from personaevo.llm.base import ScriptedLLM

        def reply(_: str) -> str:
            time.sleep(3.0)
            return "female"

        return ScriptedLLM(reply, name="slow")

    assert EvolveConfig(n=100).limits().cpu_seconds == 2.0
    assert EvolveConfig(n=10).limits().cpu_seconds == 1.0
    evaluator = RayEvaluator(
        load_space("big_five"),
        None,
        workers=1,
        n=10,
        n_probes=200,
        eval_timeout=60,
        cpu_seconds=1.0,
        llm=slow_model,
    )
    evaluator.start()
    try:
        start = time.monotonic()
        busy = evaluator.evaluate([("busy", BUSY, "busy")])["busy"]
        busy_seconds = time.monotonic() - start
        waiting = evaluator.evaluate([("waiting", WAITING, "waiting")])["waiting"]
    finally:
        evaluator.close()
    assert busy.failure == "timeout" and "CPU-time limit" in busy.message, busy
    assert busy_seconds < 20
    assert waiting.ok and waiting.report.n_valid == 10, (waiting.failure, waiting.message)
    assert waiting.run_seconds >= 3.0


def test_lineage_records_the_island_of_each_child(reference_run):
    _, rundir = reference_run
    lines = [json.loads(x) for x in (rundir.path / "evaluations.jsonl").read_text().splitlines()]
    children = [x for x in lines if x["generation"] > 0]
    assert children and {x["island"] for x in children} <= {0, 1}
    assert {x["island"] for x in children} == {0, 1}


def _failed(tasks, pulls: list[int] | None = None, evo=None) -> dict:
    """An evaluator that fails every program (no sandbox: fast), recording the variation
    count of ``evo`` at each task it reads."""
    from personaevo.evaluate import Evaluation

    out = {}
    for key, _, name in tasks:
        if pulls is not None:
            pulls.append(sum(evo.variation.values()))
        out[key] = Evaluation(program=name, program_hash=key, n=1, seed=0, ok=False)
    return out


def test_children_are_made_as_the_evaluator_reads_them():
    from personaevo.evaluate import seed_generator_paths
    from personaevo.evolution import Evolution
    from personaevo.programs import load_program

    seeds = [(p.name, p.source) for p in map(load_program, seed_generator_paths())]

    def evolution(evaluate) -> Evolution:
        return Evolution(["mc_coverage", "validity"], 4, 2, 0.3, 1, 1, 7, evaluate)

    pulls: list[int] = []
    lazy = evolution(lambda tasks: _failed(tasks, pulls, lazy))
    eager = evolution(lambda tasks: _failed(list(tasks)))
    for evo in (eager, lazy):
        evo.seed_population(seeds)
        evo.step()
        pulls.clear()
        evo.step()
    # the last generation's children were made one by one between the evaluator's reads
    assert len(set(pulls)) > 1 and pulls == sorted(pulls)
    assert [[i.key for i in island] for island in lazy.islands] == [
        [i.key for i in island] for island in eager.islands
    ]
    assert list(lazy.cache) == list(eager.cache)


STAGES = ("evaluations", "logbook", "front", "previous", "checkpoint")


def _evolve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "personaevo.cli", "evolve", *args],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _recorded_keys(run: Path) -> set[str]:
    """The evaluations a run holds: committed and journaled."""
    keys = {json.loads(x)["hash"] for x in _lines(run / "evaluations.jsonl") if x.endswith("}")}
    return keys | {json.loads(x)["hash"] for x in _lines(run / "journal.jsonl") if x.endswith("}")}


@pytest.mark.timeout(600)
def test_kill_9_at_three_seeded_random_points_resumes_to_the_uninterrupted_run(
    reference_run, tmp_path
):
    """Fault injection: the CLI run is killed with ``kill -9`` of its process group in the
    middle of a generation (after a random number of returned evaluations), inside the
    checkpoint write (the test hook, at a random generation and stage) and at a random
    moment of a resumed process; each time it is resumed. It ends identical to the
    uninterrupted run, and no evaluation that had returned before a kill ran again. A copy
    made after the first kill, resumed with another number of workers, ends the same, and
    resuming it leaves the original byte for byte as it was."""
    from _run_state import file_bytes, run_state

    _, reference = reference_run
    rng = random.Random(19)
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    EvolveConfig(**{**SMALL, "out": str(out), "workers": 2}).save(config)
    finished_log = tmp_path / "finished.log"
    env = dict(os.environ, PERSONAEVO_TEST_EVALUATION_LOG=str(finished_log))
    kills: list[tuple[int, set[str]]] = []  # (finished-log lines, evaluations kept)

    def kill(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append((len(_lines(finished_log)), _recorded_keys(out)))

    # 1. mid-generation, after a random number of returned evaluations of generation 2+
    proc = _evolve("--config", str(config), env=env)
    wanted = rng.randint(1, 5)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = out / "checkpoint.json"
        started = ckpt.exists() and json.loads(ckpt.read_text())["generation"] >= 1
        if started and len(_lines(out / "journal.jsonl")) >= wanted:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the kill"
    kill(proc)
    assert _lines(out / "journal.jsonl"), "killed with no evaluation returned"

    # a copy of the half-finished run, resumed elsewhere with one worker
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    before = file_bytes(out)
    resumed = _evolve("--resume", str(copy), "--workers", "1", env=env)
    resumed.wait(timeout=300)
    assert resumed.returncode == 0, resumed.stdout.read()
    assert file_bytes(out) == before

    # 2. inside the checkpoint write, at a random stage of a generation still to come
    done = json.loads((out / "checkpoint.json").read_text())["generation"]
    point = f"checkpoint:{rng.randint(done + 1, SMALL['generations'])}:{rng.choice(STAGES)}"
    proc = _evolve("--resume", str(out), env={**env, "PERSONAEVO_TEST_KILL_AT": point})
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.stdout.read())
    kills.append((len(_lines(finished_log)), _recorded_keys(out)))

    # 3. at a random moment of the next resumed process (Ray's start-up included)
    proc = _evolve("--resume", str(out), env=env)
    time.sleep(rng.uniform(2.0, 12.0))
    if proc.poll() is None:
        kill(proc)
    else:
        proc.wait()
    final = _evolve("--resume", str(out), env=env)
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0, output

    assert run_state(out) == run_state(reference.path), point
    assert run_state(copy) == run_state(reference.path)
    finished = _lines(finished_log)
    for at, kept in kills:
        again = kept & set(finished[at:])
        assert not again, f"evaluated again after a kill: {sorted(again)[:3]}"


@pytest.mark.timeout(900)
def test_a_lost_node_costs_one_retry_and_the_pool_follows_the_cluster(reference_run, tmp_path):
    """A real 2-node Ray cluster on this machine (token authentication on; in a network
    namespace of its own where the machine allows, so it listens on 127.0.0.1 only). The
    second node's raylet is killed with ``kill -9`` after generation 1 of a 10-generation
    run: the run finishes with the front of an uninterrupted run, no generation slower
    than 3x the median, saying once that the pool shrank. A pool short of a worker grows
    back when a node joins, and a local run never joins the cluster even with
    ``RAY_ADDRESS`` naming it. Nothing of the cluster is left running."""
    from personaevo.evolution.local_cluster import in_private_network

    _, reference = reference_run
    extended = tmp_path / "extended"
    shutil.copytree(reference.path, extended, symlinks=True)
    run_evolution(
        EvolveConfig(**{**SMALL, "generations": 10, "workers": 2, "out": str(extended)}),
        resume=True,
        log=lambda line: None,
    )
    out = tmp_path / "cluster-run"
    config = tmp_path / "run.yaml"
    EvolveConfig(**{**SMALL, "generations": 10, "workers": 2, "out": str(out)}).save(config)
    result = tmp_path / "result.json"
    command = [sys.executable, str(Path(__file__).with_name("_node_loss_scenario.py"))]
    command += [str(config), str(result)]
    scenario = subprocess.run(
        in_private_network(command) or command, capture_output=True, text=True, timeout=600
    )
    assert result.exists(), scenario.stdout[-3000:] + scenario.stderr[-3000:]
    seen = json.loads(result.read_text())
    evolve = seen["evolve"]
    assert evolve["rc"] == 0 and evolve["killed_at"] is not None, evolve["log"][-3000:]
    assert _front(out) == _front(extended)
    times = [json.loads(x)["time"] for x in (out / "logbook.jsonl").read_text().splitlines()]
    durations = [b - a for a, b in itertools.pairwise(times)]
    assert max(durations) <= 3 * statistics.median(durations), durations
    assert evolve["log"].count("cannot be placed yet") == 1, evolve["log"][-3000:]
    grow = seen["grow"]
    assert grow["at_start"] == 1 and grow["at_end"] == 2, grow
    assert grow["messages"][-1] == "evaluation pool: back to 2 of 2 workers", grow
    assert seen["local"]["gcs_address"] != seen["local"]["cluster"]
    assert seen["processes_before_stop"] > 0 and seen["left_behind"] == []
