"""The 2-node scenario of ``test_evolution.py``, run as a script (in a network namespace
of its own where the machine allows, so the cluster listens on 127.0.0.1 only).

``python _node_loss_scenario.py CONFIG.yaml RESULT.json`` starts a head and one worker
node (1 CPU each, token authentication on), then:

1. runs ``personaevo evolve --config CONFIG --address HEAD --workers 2`` as a driver that
   holds only the token file (it must turn token mode on by itself), and ``kill -9``s the
   worker node's raylet once generation 1 is checkpointed;
2. makes a 2-worker pool on the head alone (one worker cannot be placed), adds a node,
   and evaluates until the pool has grown back;
3. with ``RAY_ADDRESS`` naming the cluster, makes a local pool, which must not join it.

It writes what it saw to RESULT.json and stops every process it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from personaevo.evolution.config import EvolveConfig
from personaevo.evolution.local_cluster import LocalCluster


def _evolve_with_node_loss(cluster: LocalCluster, config: Path, out: Path) -> dict:
    log = cluster.root / "evolve.log"
    with log.open("w") as handle:
        driver = subprocess.Popen(
            [
                *(sys.executable, "-m", "personaevo.cli", "evolve"),
                *("--config", str(config), "--address", cluster.address, "--workers", "2"),
            ],
            env=cluster.env(auth_mode=False),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        killed_at = None
        deadline = time.monotonic() + 240
        while driver.poll() is None and time.monotonic() < deadline:
            checkpoint = out / "checkpoint.json"
            ready = killed_at is None and checkpoint.exists()
            if ready and json.loads(checkpoint.read_text())["generation"] >= 1:
                cluster.kill_node("worker")
                killed_at = time.time()
            time.sleep(0.1)
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    return {"rc": driver.returncode, "killed_at": killed_at, "log": log.read_text()}


def _pool_grows_back(cluster: LocalCluster) -> dict:
    from personaevo.evolution import RayEvaluator
    from personaevo.spaces import load_space

    program = (
        "def generate(space, n, rng, llm=None):\n"
        "    return [{'id': str(k), 'traits': {'openness': 50.0, 'conscientiousness': 50.0,\n"
        "        'extraversion': 50.0, 'agreeableness': 50.0, 'neuroticism': float(k),\n"
        "        'age': 40.0, 'gender': 'female', 'education': 'college_degree'}}\n"
        "        for k in range(n)]\n"
    )
    evaluator = RayEvaluator(
        load_space("big_five"),
        None,
        workers=2,
        n=10,
        n_probes=200,
        address=cluster.address,
        placement_grace=3.0,
    )
    evaluator.start()
    try:
        at_start = evaluator.ready_workers
        cluster.add_node("late")
        deadline = time.monotonic() + 90
        batches = 0
        while evaluator.ready_workers < 2 and time.monotonic() < deadline:
            tasks = [(f"k{batches}-{i}", program + f"# {batches} {i}\n", "p") for i in range(4)]
            results = evaluator.evaluate(tasks)
            assert all(e.ok for e in results.values()), results
            batches += 1
        return {
            "at_start": at_start,
            "at_end": evaluator.ready_workers,
            "messages": evaluator.pool_messages,
        }
    finally:
        evaluator.close()


def _local_run_stays_local(cluster: LocalCluster) -> dict:
    import ray

    from personaevo.evolution import RayEvaluator
    from personaevo.spaces import load_space

    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        evaluator = RayEvaluator(load_space("big_five"), None, workers=1, n=10, n_probes=200)
        evaluator.start()
        try:
            gcs = ray.get_runtime_context().gcs_address
        finally:
            evaluator.close()
    finally:
        del os.environ["RAY_ADDRESS"]
    return {"gcs_address": gcs, "cluster": cluster.address}


def main(config: Path, result: Path) -> None:
    out = Path(EvolveConfig.load(config).out)
    seen: dict = {}
    with LocalCluster() as cluster:
        started = time.monotonic()
        cluster.start_head()
        cluster.add_node("worker")
        seen["cluster_seconds"] = time.monotonic() - started
        os.environ.update(cluster.env())
        seen["evolve"] = _evolve_with_node_loss(cluster, config, out)
        seen["grow"] = _pool_grows_back(cluster)
        seen["local"] = _local_run_stays_local(cluster)
        seen["processes_before_stop"] = len(cluster.processes())
        root = cluster.root
    seen["left_behind"] = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(str(root) in arg for arg in (p.info["cmdline"] or []))
    ]
    result.write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
