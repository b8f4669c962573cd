"""Run configurations built from command-line options: a value the configuration model
refuses is reported against the option it came from, not as a pydantic traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from personaevo.errors import InputError
from personaevo.spaces import validation_problems

Config = TypeVar("Config", bound=BaseModel)


def option_name(field: str) -> str:
    """The option a configuration field is set by when nothing else says: ``--field-name``."""
    return "--" + field.replace("_", "-")


def config_from_options(
    model: type[Config],
    data: Mapping[str, Any],
    options: Mapping[str, str],
    source: str | None = None,
) -> Config:
    """``model.model_validate(data)``, with problems reported where the values came from.

    ``options`` maps each field set on the command line to its option (``{"generations":
    "--generations"}``); a problem in such a field reads ``--generations: Input should be
    greater than or equal to 1, got -1``. A problem in any other field is put on
    ``source`` (the configuration file the rest of ``data`` came from) when given. Raises
    :class:`InputError`, one line per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for (where, reason), detail in zip(validation_problems(err), err.errors(), strict=True):
            field = str(detail["loc"][0]) if detail["loc"] else ""
            if field in options:
                nested = where.removeprefix(field).lstrip(".")
                where = options[field] + (f" ({nested})" if nested else "")
                value = detail["input"]
                got = f", got {value!r}" if isinstance(value, int | float | str) else ""
                lines.append(f"{where}: {reason}{got}")
            else:
                lines.append(f"{source}: {where}: {reason}" if source else f"{where}: {reason}")
        raise InputError("\n".join(lines)) from None
