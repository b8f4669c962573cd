"""What a training run logs beside TRL's own metrics: one progress line per step, the
judge's verdicts per reward and step, and reward curves from the log history."""

from __future__ import annotations

from collections.abc import Callable

from personaevo.simulator.rewards import CountedReward
from personaevo.simulator.verdicts import JudgementCount


def progress_callback(log: Callable[[str], None], names: list[str]):
    """One line per logged step: the total reward and each reward's mean."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs:
                return
            parts = [f"step {state.global_step}/{state.max_steps}", f"reward {logs['reward']:.3f}"]
            for name in names:
                value = logs.get(f"rewards/{name}/mean")
                if value is not None:
                    unreadable = logs.get(f"unreadable/{name}", 0)
                    note = f" ({unreadable} unreadable)" if unreadable else ""
                    parts.append(f"{name} {value:.2f}{note}")
            if logs.get("step_time") is not None:
                parts.append(f"{logs['step_time']:.1f} s/step")
            log("  ".join(parts))

    return Progress()


def judgement_log_callback(funcs: list[CountedReward]):
    """A ``transformers`` callback that adds to each logged training step, per reward that
    asked the judge since the previous log: ``judgements/NAME`` (its verdicts) and
    ``unreadable/NAME`` (the unreadable ones among them). It writes them into the step's
    ``state.log_history`` entry and into ``logs`` (so later callbacks print them)."""
    from transformers import TrainerCallback

    class JudgementLog(TrainerCallback):
        def __init__(self) -> None:
            self.logged = {f.__name__: JudgementCount() for f in funcs}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs:
                return
            entry: dict[str, int] = {}
            for f in funcs:
                new = f.count - self.logged[f.__name__]
                self.logged[f.__name__] = f.count
                if new.judgements:
                    entry[f"judgements/{f.__name__}"] = new.judgements
                    entry[f"unreadable/{f.__name__}"] = new.unreadable
            logs.update(entry)
            if state.log_history and state.log_history[-1].get("reward") == logs["reward"]:
                state.log_history[-1].update(entry)

    return JudgementLog()


def reward_curves(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """``{reward name: [(step, mean), ...]}`` from TRL's log history."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for key, value in entry.items():
            if key.startswith("rewards/") and key.endswith("/mean") and value is not None:
                name = key.split("/")[1]
                curves.setdefault(name, []).append((int(entry.get("step", 0)), float(value)))
    return curves
