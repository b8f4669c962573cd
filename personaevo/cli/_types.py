"""Argparse ``type=`` callables for numeric options.

Each parses an option's text and checks it against the option's bounds while the command
line is parsed, so a bad value stops the command (exit code 2, one line naming the option
and the rule: ``--n: must be an integer >= 1, got -5``) before anything runs. Floats must
be finite (``nan``, ``inf`` are refused). Every numeric option of every command uses one
of these; ``tests/test_cli_inputs.py`` checks that none is left with a bare ``type=int``
or ``type=float``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from personaevo.bounds import (
    MAX_PERSONAS_PER_RUN,
    MAX_PORT,
    MAX_PROBES,
    MAX_SEED,
    MAX_WORKERS,
    MIN_PROBES,
)

_SHOWN_CHARS = 40


@dataclass(frozen=True)
class BoundedNumber:
    """An integer or a finite float within ``[low, high]`` (either end may be open or
    absent). Called with an option's text, it returns the number or raises
    :class:`argparse.ArgumentTypeError` saying what the value must be and what it was."""

    kind: type[int] | type[float]
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __call__(self, text: str) -> int | float:
        value = self._parse(text)
        if value is None or not self.admits(value):
            raise argparse.ArgumentTypeError(f"must be {self.rule}, got {_shown(text)}")
        return value

    def admits(self, value: float) -> bool:
        """Whether ``value`` (already of :attr:`kind`) lies within the bounds."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        below = self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        )
        above = self.high is not None and (
            value > self.high or (value == self.high and not self.high_inclusive)
        )
        return not (below or above)

    @property
    def rule(self) -> str:
        """What a value must be, e.g. ``an integer >= 1 and <= 100000``."""
        noun = "an integer" if self.kind is int else "a number"
        limits = []
        if self.low is not None:
            limits.append(f"{'>=' if self.low_inclusive else '>'} {_number(self.low)}")
        if self.high is not None:
            limits.append(f"{'<=' if self.high_inclusive else '<'} {_number(self.high)}")
        if self.kind is float and self.high is None:
            noun = "a finite number"
        return " ".join([noun, " and ".join(limits)]) if limits else noun

    def _parse(self, text: str) -> int | float | None:
        try:
            return int(text) if self.kind is int else float(text)
        except ValueError:  # not a number, or an integer of more than 4300 digits
            return None


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else format(bound, "g")


def _shown(text: str) -> str:
    """The value as the message shows it: as typed when it reads as a number (``-5``,
    ``nan``), quoted otherwise (``'abc'``); cut to a few dozen characters."""
    stripped = text.strip()
    try:
        float(stripped)
    except ValueError:
        shown = repr(text)
    else:
        shown = stripped
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."


def int_at_least(low: int) -> BoundedNumber:
    """An integer ``>= low`` (``int_at_least(1)``: a count that must not be zero)."""
    return BoundedNumber(int, low=low)


def int_in(low: int, high: int) -> BoundedNumber:
    """An integer from ``low`` to ``high``, both included."""
    return BoundedNumber(int, low=low, high=high)


def float_at_least(low: float) -> BoundedNumber:
    """A finite float ``>= low``."""
    return BoundedNumber(float, low=low)


def float_above(low: float) -> BoundedNumber:
    """A finite float ``> low``."""
    return BoundedNumber(float, low=low, low_inclusive=False)


def float_in(
    low: float, high: float, *, low_inclusive: bool = True, high_inclusive: bool = True
) -> BoundedNumber:
    """A float from ``low`` to ``high``; each end included unless told otherwise."""
    return BoundedNumber(
        float, low=low, high=high, low_inclusive=low_inclusive, high_inclusive=high_inclusive
    )


positive_float = float_above(0.0)
"""A finite float ``> 0``: seconds, learning rates."""

share = float_in(0.0, 1.0)
"""A share or probability in ``[0, 1]``."""

seed_number = int_in(0, MAX_SEED)
"""A seed: an integer from 0 to :data:`personaevo.bounds.MAX_SEED`."""

port_number = int_in(1, MAX_PORT)
"""A TCP port, 1 to 65535."""

personas_per_run = int_in(1, MAX_PERSONAS_PER_RUN)
"""Personas one program run is asked for: 1 to :data:`personaevo.bounds.MAX_PERSONAS_PER_RUN`."""

probe_count = int_in(MIN_PROBES, MAX_PROBES)
"""Monte Carlo coverage probes: :data:`~personaevo.bounds.MIN_PROBES` to
:data:`~personaevo.bounds.MAX_PROBES`."""

worker_count = int_in(1, MAX_WORKERS)
"""Sandbox or Ray workers: 1 to :data:`personaevo.bounds.MAX_WORKERS`."""
