"""What ``evolve`` prints when a run ends: an 80-column summary and one sentence, with the
full metric table written into the run directory (``summary.txt``)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from rich.console import Console

from personaevo.cli._common import console, say
from personaevo.metrics import ScoreReport
from personaevo.tables import best_by_objective, report_table, short_metric_name, summary_table

MAX_FRONT_ROWS = 10


def front_vs_seeds(evo, objectives: list[str]) -> str:
    """One sentence: on which objectives the best *evolved* front program beats every
    seed (all scored at the run's n), and on which it does not."""
    seed_keys = {s.key for s in evo.seeds}
    seeds = {s.name: evo.cache[s.key].report for s in evo.seeds}
    evolved = {ind.name: evo.cache[ind.key].report for ind in evo.front if ind.key not in seed_keys}
    head = f"The front holds {len(evo.front)} programs, {len(evolved)} of them evolved."
    if not evolved:
        return head + " Evolution found nothing that the seeds do not dominate."
    best_seed = best_by_objective(seeds, objectives)
    best_evolved = best_by_objective(evolved, objectives)
    wins, losses = [], []
    for name in objectives:
        if name not in best_evolved or name not in best_seed:
            continue
        evolved_value = best_evolved[name][1]
        seed_label, seed_value = best_seed[name]
        sign = 1.0 if ScoreReport.direction(name) == "higher" else -1.0
        text = f"{short_metric_name(name)} ({evolved_value:.3f} vs {seed_label} {seed_value:.3f})"
        (wins if sign * evolved_value > sign * seed_value else losses).append(text)
    if not wins:
        return head + f" None beats the best seed on any objective: {', '.join(losses)}."
    text = head + f" The best of them beat every seed on {', '.join(wins)}"
    return text + (f"; not on {', '.join(losses)}." if losses else ".")


def print_run_summary(evo, rundir, space, config, wide: bool) -> Path:
    """Print the summary (or, with ``wide``, every metric) and write the full table to
    ``RUN/summary.txt``; return that path."""
    objectives = evo.objectives
    reports, status = {}, {}
    seed_keys = {s.key for s in evo.seeds}
    front_keys = {ind.key for ind in evo.front}
    for s in evo.seeds:
        evaluation = evo.cache[s.key]
        reports[s.name] = evaluation.report if evaluation.ok else None
        status[s.name] = evaluation.failure or ("seed+front" if s.key in front_keys else "seed")
    evolved = [ind for ind in evo.front if ind.key not in seed_keys]
    evolved.sort(key=lambda ind: ind.fitness.values, reverse=True)
    for ind in evolved[:MAX_FRONT_ROWS]:
        reports[ind.name] = evo.cache[ind.key].report
        status[ind.name] = "front"
    title = (
        f"{space.name}: {evo.generation} generations, n={config.n}, seed={config.seed}, "
        f"{evo.evaluations} evaluations"
    )
    full = report_table(reports, title=title, status=status)
    path = Path(rundir.path) / "summary.txt"
    recorder = Console(record=True, width=44 + 28 * len(reports), file=io.StringIO())
    recorder.print(full)
    path.write_text(recorder.export_text(), encoding="utf-8")
    console.print(full if wide else summary_table(reports, objectives, status, title=title))
    if len(evolved) > MAX_FRONT_ROWS:
        say(f"({len(evolved) - MAX_FRONT_ROWS} more evolved front programs in the run's front/)")
    say(textwrap.fill(front_vs_seeds(evo, objectives), 80))
    say(f"Every metric: {path}")
    say(f"Front programs: {Path(rundir.path) / 'front'}")
    return path
