"""Evolution on 1 and on 2 Ray nodes: evaluations per second, their ratio, and where the
driver's time goes, with what that predicts for 8 and 64 nodes.

Without ``--address`` the script makes the clusters itself on this machine
(:class:`personaevo.evolution.local_cluster.LocalCluster`: a head node, then a second
node, ``--cpus`` CPUs each, token authentication on) and runs the same evolution
(``--space``, ``--generations``, ``--population``, ``--islands``, ``--n``, ``--seed``)
with ``--cpus`` workers per node. With ``--address`` it runs on that cluster instead,
once per ``--workers`` count (say ``--workers 4 8`` for one node of 4 CPUs and two).

For each run:

* **evals/s**: evaluations of generations 1..G over the wall time from the end of
  generation 0 to the end (Ray start-up and actor creation left out);
* **driver time** by part, from ``Evolution.driver_seconds``: ``variation`` (making
  children; it overlaps the evaluations, since children are made as the evaluator asks
  for them), ``evaluation`` (waiting for results beyond that), ``selection`` (NSGA-II,
  migration, front, logbook statistics) and ``io`` (recording evaluations, checkpoints).
  ``variation + selection + io`` is the driver's serial work per generation, ``S``;
* **the model**: a generation of ``B`` children (``islands x population``) on ``W``
  workers takes ``S + t * ceil(B / W)``, with ``t`` the mean wall time of one
  evaluation on a worker (from the 1-node run: its time per generation less ``S``,
  over the evaluations each of its workers did per generation). Printed: its prediction
  for the 2-node run (to check it against the measurement) and for 8 and 64 nodes.

Run on this machine inside a network namespace of its own, so that the clusters listen
on 127.0.0.1 only::

    unshare --net sh -c 'ip link set lo up && exec python experiments/bench_nodes.py'
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from personaevo.evolution import EvolveConfig, run_evolution
from personaevo.evolution.local_cluster import LocalCluster


def measure(config: EvolveConfig) -> dict:
    """Run ``config``; evaluations per second after generation 0 and the driver's time."""
    marks: list[tuple[float, int]] = []
    state: dict = {}

    def log(line: str) -> None:
        if line.startswith("gen "):
            evaluations = int(line.split("evals ")[1].split()[0])
            marks.append((time.monotonic(), evaluations))

    evo, _, _ = run_evolution(config, log=log)
    (t0, e0), (t1, e1) = marks[0], marks[-1]
    seconds = dict(evo.driver_seconds)
    state.update(
        workers=config.workers,
        evaluations=e1 - e0,
        wall=t1 - t0,
        rate=(e1 - e0) / (t1 - t0),
        driver=seconds,
        serial=seconds.get("variation", 0) + seconds.get("selection", 0) + seconds.get("io", 0),
        generations=config.generations,
    )
    return state


def predict(serial_per_gen: float, per_eval: float, batch: float, workers: int) -> float:
    """Evaluations per second of a generation of ``batch`` children on ``workers``."""
    return batch / (serial_per_gen + per_eval * math.ceil(batch / workers))


def report(runs: list[dict], cpus: int) -> None:
    for run in runs:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(run["driver"].items()))
        print(
            f"{run['workers']} workers: {run['rate']:.2f} evals/s "
            f"({run['evaluations']} evaluations in {run['wall']:.1f} s); driver: {parts}"
        )
    one, two = runs[0], runs[-1]
    print(f"ratio {two['workers']}/{one['workers']} workers: {two['rate'] / one['rate']:.2f}x")
    gens = one["generations"]
    serial = one["serial"] / (gens + 1)  # generation 0 does the same work
    batch = one["evaluations"] / gens  # evaluations per generation (cached children skipped)
    per_eval = (one["wall"] / gens - serial) / math.ceil(batch / one["workers"])
    print(
        f"model: S = {serial * 1000:.0f} ms of serial driver work per generation, "
        f"t = {per_eval * 1000:.0f} ms per evaluation on a worker, "
        f"B = {batch:.1f} evaluations per generation"
    )
    for nodes in (2, 8, 64):
        workers = nodes * cpus
        rate = predict(serial, per_eval, batch, workers)
        print(f"  {nodes:>2} nodes ({workers} workers): {rate:.1f} evals/s predicted")
    print(
        f"  limit: {batch / (serial + per_eval):.1f} evals/s once every evaluation of a "
        f"generation has a worker of its own ({math.ceil(batch)} workers); more stay idle"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", help="run on this Ray cluster (default: make them here)")
    parser.add_argument("--workers", type=int, nargs="+", help="with --address: counts to run")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per node made here")
    parser.add_argument("--space", default="mental_health_support")
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--islands", type=int, default=2)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    base = {
        "space": args.space,
        "generations": args.generations,
        "population": args.population,
        "islands": args.islands,
        "n": args.n,
        "seed": args.seed,
        "migration_interval": 1,
        "migrants": 1,
    }
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.address:
            for workers in args.workers or [1, 2]:
                out = str(Path(tmp) / f"w{workers}")
                config = EvolveConfig(**base, workers=workers, address=args.address, out=out)
                runs.append(measure(config))
        else:
            with LocalCluster() as cluster:
                cluster.start_head(args.cpus)
                os.environ.update(cluster.env())
                for nodes in (1, 2):
                    if nodes == 2:
                        cluster.add_node("second", args.cpus)
                    out = str(Path(tmp) / f"nodes{nodes}")
                    workers = nodes * args.cpus
                    config = EvolveConfig(**base, workers=workers, address=cluster.address, out=out)
                    runs.append(measure(config))
    report(runs, args.cpus if not args.address else 1)


if __name__ == "__main__":
    main()
