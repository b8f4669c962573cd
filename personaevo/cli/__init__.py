"""The ``personaevo`` command line: a thin layer over the Python API.

Each command lives in its own module with a ``register(subparsers)`` function; ``COMMANDS``
lists them in the order ``--help`` shows them. Bad input (a malformed file, an unknown
space) prints one clear message and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from personaevo.cli._parser import OneLineErrorParser
from personaevo.errors import InputError
from personaevo.llm.base import LLMError

COMMANDS: tuple[str, ...] = (
    "spaces",
    "scoring",
    "evolve",
    "llm",
    "export",
    "report",
    "simulator",
    "tau2",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="personaevo",
        description="Evolve persona-generator programs for coverage of rare configurations.",
    )
    sub = parser.add_subparsers(dest="command")
    for name in COMMANDS:
        importlib.import_module(f"personaevo.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # the default job: a small evolution on a built-in space
        args = parser.parse_args(["evolve"])
    try:
        return args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except LLMError as err:
        # A backend that failed (a server down, an unknown --llm-model): its message names
        # the backend and what to do; the traceback would only hide it.
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
