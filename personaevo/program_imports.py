"""What a generator program may import: a list of modules and of the names each gives.

The static check (:mod:`personaevo.programs`) allows ``import M`` only for a module ``M``
listed in :data:`PROGRAM_MODULES`, and ``from M import x`` or ``M.x`` only when ``x`` is one
of the names that module gives to programs (:func:`refusal` says why not):

* a listed module's names are its public names (``__all__``, or the names not starting
  with ``_``), or the explicit ``names`` of its :class:`ModuleRule`, minus the rule's
  ``denied`` names (file access, clocks, OS randomness, interpreter introspection);
* a name whose value is a module is given only when that module, under the path the
  program uses (``numpy.linalg``), is itself listed. ``typing.sys``,
  ``statistics.random`` or ``scipy.io`` are therefore refused although ``typing``,
  ``statistics`` and ``scipy`` are allowed.

Of personaevo itself programs get one module, :mod:`personaevo.generator_kit`.
``tests/test_program_imports.py`` walks every listed module and proves that no name it
gives is a module outside the list, a clock, a source of OS randomness, or file, process
or interpreter access. The list is feedback for program authors and the first layer of a
deterministic program; the sandbox (:mod:`personaevo.sandbox`) is the security boundary.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "PROGRAM_MODULES",
    "UNSEEDED_RANDOM_CONSTRUCTORS",
    "ModuleRule",
    "given_names",
    "is_program_module",
    "refusal",
]


@dataclass(frozen=True)
class ModuleRule:
    """Which names a listed module gives to programs."""

    names: frozenset[str] | None = None
    """Explicit names; None: the module's public names."""
    denied: Mapping[str, str] = field(default_factory=dict)
    """Public names refused, each with the reason shown to the program's author."""


_FILES = "reads or writes files"
_CLOCK = "reads the clock (np.datetime64('now'))"
_INTROSPECTION = "inspects the interpreter or the machine"
_COMPUTED = "reaches attributes by a computed name"
_EVALUATES = "evaluates strings as code"

_NUMPY_RANDOM_NAMES = frozenset(
    {
        "Generator",
        "default_rng",
        "SeedSequence",
        "BitGenerator",
        "PCG64",
        "PCG64DXSM",
        "Philox",
        "SFC64",
        "MT19937",
    }
)

PROGRAM_MODULES: Mapping[str, ModuleRule] = types.MappingProxyType(
    {
        "__future__": ModuleRule(),
        "abc": ModuleRule(),
        "bisect": ModuleRule(),
        "collections": ModuleRule(),
        "collections.abc": ModuleRule(),
        "copy": ModuleRule(),
        "dataclasses": ModuleRule(),
        "decimal": ModuleRule(),
        "enum": ModuleRule(),
        "fractions": ModuleRule(),
        "functools": ModuleRule(),
        "heapq": ModuleRule(),
        "itertools": ModuleRule(),
        "json": ModuleRule(),
        "math": ModuleRule(),
        "numbers": ModuleRule(),
        "operator": ModuleRule(denied={"attrgetter": _COMPUTED, "methodcaller": _COMPUTED}),
        "re": ModuleRule(),
        "statistics": ModuleRule(),
        "string": ModuleRule(),
        "textwrap": ModuleRule(),
        "typing": ModuleRule(denied={"get_type_hints": _EVALUATES, "ForwardRef": _EVALUATES}),
        "numpy": ModuleRule(
            denied={
                **dict.fromkeys(
                    (
                        "fromfile",
                        "fromregex",
                        "genfromtxt",
                        "load",
                        "loadtxt",
                        "memmap",
                        "save",
                        "savetxt",
                        "savez",
                        "savez_compressed",
                    ),
                    _FILES,
                ),
                "datetime64": _CLOCK,
                **dict.fromkeys(
                    ("get_include", "info", "show_config", "show_runtime", "test"), _INTROSPECTION
                ),
            }
        ),
        "numpy.fft": ModuleRule(),
        "numpy.linalg": ModuleRule(),
        "numpy.random": ModuleRule(names=_NUMPY_RANDOM_NAMES),
        "scipy": ModuleRule(
            denied=dict.fromkeys(("LowLevelCallable", "show_config", "test"), _INTROSPECTION)
        ),
        "scipy.interpolate": ModuleRule(),
        "scipy.linalg": ModuleRule(),
        "scipy.optimize": ModuleRule(),
        "scipy.spatial": ModuleRule(),
        "scipy.spatial.distance": ModuleRule(),
        "scipy.special": ModuleRule(),
        "scipy.stats": ModuleRule(),
        "scipy.stats.qmc": ModuleRule(),
        "allpairspy": ModuleRule(names=frozenset({"AllPairs"})),
        "personaevo": ModuleRule(names=frozenset({"generator_kit"})),
        "personaevo.generator_kit": ModuleRule(),
    }
)
"""Every module a program may import, with the rule for the names it gives."""

UNSEEDED_RANDOM_CONSTRUCTORS: frozenset[str] = frozenset(
    f"numpy.random.{name}" for name in _NUMPY_RANDOM_NAMES - {"Generator", "BitGenerator"}
)
"""Calls that draw fresh OS entropy when given no seed (or ``None``)."""


def is_program_module(module: str) -> bool:
    """True when ``module`` (a dotted path) may be imported by programs."""
    return module in PROGRAM_MODULES


@functools.cache
def _loaded(module: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


@functools.cache
def given_names(module: str) -> frozenset[str]:
    """The names listed ``module`` gives to programs (empty when it is not installed)."""
    rule = PROGRAM_MODULES[module]
    loaded = _loaded(module)
    if loaded is None:
        return frozenset()
    if rule.names is not None:
        names = set(rule.names)
    else:
        public = getattr(loaded, "__all__", None)
        if public is None:
            public = [n for n in dir(loaded) if not n.startswith("_")]
        names = {str(n) for n in public if not str(n).startswith("_")}
    names -= set(rule.denied)
    return frozenset(n for n in names if not _unlisted_module(loaded, module, n))


def _unlisted_module(loaded: types.ModuleType, module: str, name: str) -> bool:
    """True when ``module.name`` is a module outside the list, or no name at all."""
    if f"{module}.{name}" in PROGRAM_MODULES:
        return False
    return _what(loaded, module, name) != "value"


def _what(loaded: types.ModuleType, module: str, name: str) -> str:
    """``"module"``, ``"value"`` or ``"missing"``: what ``module.name`` is. Lazily loaded
    submodules (``scipy.io``) are recognised without importing them."""
    if name in vars(loaded):
        return "module" if isinstance(vars(loaded)[name], types.ModuleType) else "value"
    try:
        if importlib.util.find_spec(f"{module}.{name}") is not None:
            return "module"
    except (ImportError, ValueError):
        pass
    try:
        value = getattr(loaded, name)
    except AttributeError:
        return "missing"
    return "module" if isinstance(value, types.ModuleType) else "value"


def refusal(module: str, name: str) -> str | None:
    """Why a program may not take ``name`` from listed ``module`` (None when it may)."""
    if f"{module}.{name}" in PROGRAM_MODULES or name in given_names(module):
        return None
    rule = PROGRAM_MODULES[module]
    if name in rule.denied:
        return f"'{module}.{name}' {rule.denied[name]}"
    if module == "numpy.random":
        return (
            f"'{module}.{name}' uses numpy's global random state; "
            "draw from the `rng` argument instead"
        )
    loaded = _loaded(module)
    if loaded is not None and _what(loaded, module, name) == "module":
        return f"module '{module}.{name}' is not available to programs"
    return f"'{module}' gives programs no name '{name}'"
