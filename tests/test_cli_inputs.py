"""Every numeric option of every command is checked while the command line is parsed.

The options are found by walking ``build_parser()``, not listed here, so a new option is
covered as soon as it exists, and one added with a bare ``type=int`` or ``type=float``
fails :func:`test_no_numeric_option_skips_validation`. Bad values go through
``personaevo.cli.main`` in-process: argparse converts values while it parses, so nothing
heavy (Ray, a model, the sandbox) ever starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from personaevo.cli import build_parser, main
from personaevo.cli._options import config_from_options
from personaevo.cli._types import BoundedNumber
from personaevo.cli.simulator import TRAIN_OPTIONS
from personaevo.errors import InputError
from personaevo.evolution.config import EvolveConfig
from personaevo.llm.base import SamplingParams
from personaevo.llm.tiny import TinyRecipe
from personaevo.simulator.training import TrainConfig

Command = tuple[str, ...]


def _commands(
    parser: argparse.ArgumentParser, path: Command = ()
) -> Iterator[tuple[Command, argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself included), with the words that select it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)


def _placeholder(action: argparse.Action) -> str:
    return str(next(iter(action.choices))) if action.choices else "x"


def _required_args(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholders for the positionals and required options of ``parser``, so that a
    command line parses up to the option under test."""
    args: list[str] = []
    for action in parser._actions:
        if not _takes_value(action):
            continue
        if not action.option_strings and action.nargs not in ("*", "?"):
            args.append(_placeholder(action))
        elif action.option_strings and action.required:
            args += [action.option_strings[0], _placeholder(action)]
    return args


PARSER = build_parser()
COMMANDS = list(_commands(PARSER))
NUMERIC = [
    (path, parser, action)
    for path, parser in COMMANDS
    for action in parser._actions
    if isinstance(action.type, BoundedNumber)
]


def _id(case: tuple[Command, argparse.ArgumentParser, argparse.Action]) -> str:
    path, _, action = case
    return " ".join([*path, action.option_strings[-1]])


def _just_outside(t: BoundedNumber) -> list[str]:
    """The nearest values the bounds refuse, computed from the bounds alone."""
    step = 1 if t.kind is int else 0.5
    out = []
    if t.low is not None:
        out.append(repr(t.kind(t.low if not t.low_inclusive else t.low - step)))
    if t.high is not None:
        out.append(repr(t.kind(t.high if not t.high_inclusive else t.high + step)))
    return out


def _bad_values(t: BoundedNumber) -> list[str]:
    bad = ["abc", "", "12abc", *_just_outside(t)]
    if t.low is None or t.low > -5:
        bad.append("-5")
    bad += ["2.5", "1e3", "nan"] if t.kind is int else ["nan", "NaN", "inf", "1e999"]
    return bad


def _good_values(t: BoundedNumber) -> list[int | float]:
    """The bounds themselves where they are included, else just inside them."""
    step = 1 if t.kind is int else 0.5
    good = []
    if t.low is not None:
        good.append(t.kind(t.low if t.low_inclusive else t.low + min(step, _width(t) / 2)))
    if t.high is not None:
        good.append(t.kind(t.high if t.high_inclusive else t.high - min(step, _width(t) / 2)))
    return good or [t.kind(1)]


def _width(t: BoundedNumber) -> float:
    return float("inf") if t.low is None or t.high is None else t.high - t.low


def test_the_walk_finds_the_numeric_options():
    found = {_id(case) for case in NUMERIC}
    # a few known ones, so that the walk itself cannot silently find nothing
    for name in ("score --n", "evolve --generations", "export --chunk", "llm serve --port"):
        assert name in found
    assert len(found) >= 50


def test_no_numeric_option_skips_validation():
    unchecked = []
    for path, parser in COMMANDS:
        for action in parser._actions:
            if not _takes_value(action) or isinstance(action.type, BoundedNumber):
                continue
            bare = action.type in (int, float)
            numeric_default = isinstance(action.default, int | float) and not isinstance(
                action.default, bool
            )
            if bare or numeric_default:
                unchecked.append(" ".join([*path, *action.option_strings]))
    assert not unchecked, f"numeric options without a bounded type: {unchecked}"


@pytest.mark.parametrize("case", NUMERIC, ids=_id)
def test_defaults_are_within_the_bounds(case):
    _, _, action = case
    t = action.type
    assert action.default is None or (type(action.default) is t.kind and t.admits(action.default))


@pytest.mark.parametrize("case", NUMERIC, ids=_id)
def test_bad_values_exit_2_with_one_line_naming_the_option(case, capsys):
    path, parser, action = case
    flag = action.option_strings[-1]
    for bad in _bad_values(action.type):
        argv = [*path, *_required_args(parser), f"{flag}={bad}"]
        with pytest.raises(SystemExit):  # refused while parsing, so main() runs no command
            PARSER.parse_args(argv)
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2, (bad, err)
        assert "Traceback" not in err
        assert err.count("\n") == 1 and err.startswith(f"{parser.prog}: error: {flag}: "), err
        assert f"must be {action.type.rule}, got " in err, err


@pytest.mark.parametrize("case", NUMERIC, ids=_id)
def test_good_values_parse_to_numbers(case):
    path, parser, action = case
    t = action.type
    for good in _good_values(t):
        args = PARSER.parse_args(
            [*path, *_required_args(parser), action.option_strings[-1], str(good)]
        )
        value = getattr(args, action.dest)
        assert type(value) is t.kind and value == good


def test_messages_name_the_rule_and_the_value(capsys):
    cases = {
        ("score", "--n", "-5"): "--n: must be an integer >= 1 and <= 100000, got -5",
        ("score", "--n", "10000000000"): "--n: must be an integer >= 1 and <= 100000, got "
        "10000000000 (see personaevo score --help)",
        ("score", "--n", "ten"): "--n: must be an integer >= 1 and <= 100000, got 'ten'",
        ("score", "--timeout", "nan"): "--timeout: must be a finite number > 0, got nan",
        ("evolve", "--population", "1"): "--population: must be an integer >= 2, got 1",
        ("reference", "--space", "x", "--rare-mass", "1"): "--rare-mass: must be a number > 0 "
        "and < 1, got 1",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit):
            main(list(argv))
        err = capsys.readouterr().err
        assert message in err and "usage:" not in err, err


def test_a_negative_value_is_read_as_a_value_and_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evolve", "--generations", "-1"])
    assert stop.value.code == 2
    assert "--generations: must be an integer >= 1, got -1" in capsys.readouterr().err


def test_other_parse_errors_are_one_line_too(capsys):
    for argv in (["score-personas"], ["no-such-command"], ["export", "--run"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err


def test_evolve_flag_exits_2_without_traceback_in_a_real_process():
    result = subprocess.run(
        [sys.executable, "-m", "personaevo.cli", "evolve", "--generations", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "personaevo evolve: error: --generations: must be an integer >= 1, got -1 "
        "(see personaevo evolve --help)\n"
    )


# --- the option bounds agree with the configuration models --------------------------------

# (command, a model whose fields its options set, option -> field where the names differ;
# None: the option means something else there)
MODELS: list[tuple[Command, type[BaseModel], dict[str, str | None]]] = [
    (("evolve",), EvolveConfig, {}),
    (("train-simulator",), TrainConfig, {flag: field for field, flag in TRAIN_OPTIONS.items()}),
    (("tiny-model", "build"), TinyRecipe, {}),
    (("llm", "ask"), SamplingParams, {}),
    (("simulate",), SamplingParams, {}),
    (("eval-simulator",), SamplingParams, {}),
    # the rollout options of train-simulator; its --temperature is the training one (> 0)
    (("simulate",), TrainConfig, {"--turns": "max_turns", "--temperature": None}),
    (("eval-simulator",), TrainConfig, {"--turns": "max_turns", "--temperature": None}),
]


def _model_bounds(model: type[BaseModel], field: str) -> dict[str, tuple[float, bool]]:
    """``{"low": (bound, inclusive), "high": ...}`` from the field's ``Field(ge=...)``."""
    bounds = {}
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge | annotated_types.Gt):
            bounds["low"] = (getattr(rule, "ge", getattr(rule, "gt", None)), hasattr(rule, "ge"))
        if isinstance(rule, annotated_types.Le | annotated_types.Lt):
            bounds["high"] = (getattr(rule, "le", getattr(rule, "lt", None)), hasattr(rule, "le"))
    return bounds


@pytest.mark.parametrize(("path", "model", "renamed"), MODELS, ids=lambda v: str(v))
def test_option_bounds_agree_with_the_configuration_model(path, model, renamed):
    checked = 0
    for case_path, _, action in NUMERIC:
        flag = action.option_strings[-1]
        field = renamed.get(flag, action.dest)
        if case_path != path or field is None or field not in model.model_fields:
            continue
        t: BoundedNumber = action.type
        for side, (bound, inclusive) in _model_bounds(model, field).items():
            ours = (t.low, t.low_inclusive) if side == "low" else (t.high, t.high_inclusive)
            assert ours == (bound, inclusive), f"{flag} vs {model.__name__}.{field} ({side})"
        checked += 1
    assert checked, f"no option of {' '.join(path)} sets a {model.__name__} field"


def test_every_evolve_and_train_option_is_a_configuration_field():
    for path, model, renamed in MODELS[:2]:
        for case_path, _, action in NUMERIC:
            if case_path == path:
                assert renamed.get(action.option_strings[-1], action.dest) in model.model_fields


# --- configurations built from options report the option, not a pydantic traceback -------


def test_evolve_configuration_problems_name_the_option():
    """What the option types would refuse, passed past them, still ends in an InputError
    naming the option (``cmd_evolve`` validates before anything runs)."""
    from personaevo.cli.evolve import cmd_evolve

    args = PARSER.parse_args(["evolve"])
    args.generations, args.population = -1, 0
    with pytest.raises(InputError) as err:
        cmd_evolve(args)
    assert str(err.value).splitlines() == [  # in the model's field order
        "--generations: Input should be greater than or equal to 1, got -1",
        "--population: Input should be greater than or equal to 2, got 0",
    ]


def test_problems_outside_the_options_name_the_configuration_file():
    with pytest.raises(InputError) as err:
        config_from_options(
            EvolveConfig,
            {"generations": 0, "islands": 0},
            {"generations": "--generations"},
            source="run.yaml",
        )
    assert str(err.value).splitlines() == [
        "--generations: Input should be greater than or equal to 1, got 0",
        "run.yaml: islands: Input should be greater than or equal to 1",
    ]


def test_evolve_config_file_with_a_bad_value_exits_2(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"generations": 0, "n": 10**9}))
    assert main(["evolve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: generations:" in err and f"{path}: n:" in err and "Traceback" not in err


def test_train_configuration_problems_name_the_file_or_the_option(tmp_path, capsys):
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"group_size": 1}))
    assert main(["train-simulator", "--model", "tiny", "--config", str(config)]) == 2
    assert f"{config}: group_size: Input should be greater than or equal to 2" in (
        capsys.readouterr().err
    )
    assert main(["train-simulator", "--model", "tiny", "--reward-weights", "goal=nan"]) == 2
    assert "--reward-weights: expected NAME=WEIGHT (a finite number)" in capsys.readouterr().err
