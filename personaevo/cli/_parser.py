"""The argument parser class of every ``personaevo`` command: a bad command line ends in
one line on stderr and exit code 2, with no usage dump before it."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineErrorParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line, such as
    ``personaevo score: error: --n: must be an integer >= 1, got -5 (see personaevo score
    --help)``. Subparsers made from it (``add_subparsers``) are of the same class."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.removeprefix("argument ").split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
