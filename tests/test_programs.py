"""Tests of the generator-program contract: static checks, loading and AST identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personaevo.programs import (
    ALLOWED_MODULES,
    CONTRACT_VERSION,
    ContractError,
    ContractProblem,
    GeneratorProgram,
    ast_hash,
    check_contract,
    load_program,
)

GOOD = '''"""Stratified personas."""
import itertools
import math

import numpy as np
from scipy.stats import qmc
from scipy.spatial import distance
import scipy.stats
import allpairspy
from collections import Counter


def _helper(k):
    """Inner docstring."""
    return k * 2


def generate(space, n, rng, llm=None):
    """Return n personas."""
    sampler = qmc.Sobol(d=2, seed=rng)
    pts = sampler.random(n)
    return [{"id": i, "traits": {"a": float(p[0]), "b": float(p[1])}}
            for i, p in enumerate(pts)]
'''


def messages(source: str) -> list[str]:
    return [str(p) for p in check_contract(source)]


def test_contract_version_is_a_string() -> None:
    assert isinstance(CONTRACT_VERSION, str) and CONTRACT_VERSION


def test_good_program_passes() -> None:
    assert check_contract(GOOD) == []
    program = load_program(GOOD, name="strat")
    assert isinstance(program, GeneratorProgram)
    assert program.name == "strat" and program.checked and program.problems == ()
    assert program.ast_hash == ast_hash(GOOD) and len(program.ast_hash) == 64
    assert program.contract_version == CONTRACT_VERSION


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "stratified_v2.py"
    path.write_text(GOOD)
    by_path = load_program(path)
    by_str = load_program(str(path))
    assert by_path.name == by_str.name == "stratified_v2"
    assert by_path.path == str(path) and by_path.source == GOOD
    assert load_program(GOOD).name == f"program-{ast_hash(GOOD)[:12]}"


# --------------------------------------------------------------------------- identity


def test_hash_ignores_comments_docstrings_and_formatting() -> None:
    variant = GOOD.replace('"""Stratified personas."""\n', "# a header comment\n")
    variant = variant.replace('    """Inner docstring."""\n', "")
    variant = variant.replace('    """Return n personas."""\n', '    """Different text."""\n')
    variant = variant.replace("return k * 2", "return (k   *   2)  # doubled")
    variant = variant.replace(
        '[{"id": i, "traits": {"a": float(p[0]), "b": float(p[1])}}\n'
        "            for i, p in enumerate(pts)]",
        '[\n        {"id": i,\n         "traits": {"a": float(p[0]), "b": float(p[1])}}\n'
        "        for i, p in enumerate(pts)\n    ]",
    )
    assert variant != GOOD
    assert ast_hash(variant) == ast_hash(GOOD)


def test_hash_changes_with_code() -> None:
    assert ast_hash(GOOD.replace("k * 2", "k * 3")) != ast_hash(GOOD)
    assert ast_hash(GOOD.replace('"a"', '"alpha"')) != ast_hash(GOOD)
    # a string statement that is not the first in its body is code, not a docstring
    moved = GOOD.replace("    return k * 2", '    x = 1\n    "not a docstring"\n    return k * 2')
    assert ast_hash(moved) != ast_hash(
        GOOD.replace("    return k * 2", "    x = 1\n    return k * 2")
    )


NESTED = """
if flag:
    def f():
        {doc}
        class C:
            {doc}
            def g(self):
                {doc}
                return 1
try:
    pass
except ValueError:
    def h():
        {doc}
        return 2
finally:
    with ctx:
        def k():
            {doc}
            return 3
match x:
    case 1:
        def m():
            {doc}
            return 4
for i in []:
    pass
else:
    async def z():
        {doc}
        return 5
"""


def test_hash_ignores_docstrings_of_nested_definitions() -> None:
    """Functions and classes inside if/try/with/match/for-else blocks own docstrings too."""
    bare = NESTED.format(doc="")
    documented = NESTED.format(doc='"""Some text."""')
    assert ast_hash(documented) == ast_hash(bare)
    assert ast_hash(documented.replace("Some text.", "Other words.")) == ast_hash(bare)
    assert ast_hash(documented.replace("return 5", "return 6")) != ast_hash(bare)


def test_hash_of_invalid_source_raises() -> None:
    with pytest.raises(SyntaxError):
        ast_hash("def (:")


@settings(max_examples=40, deadline=None)
@given(
    comments=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
        min_size=1,
        max_size=8,
    ),
    blank=st.integers(min_value=0, max_value=3),
)
def test_hash_invariant_to_inserted_comments(comments: list[str], blank: int) -> None:
    lines = GOOD.splitlines()
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i < len(comments) and not line.rstrip().endswith(("(", "[", ",")):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# {comments[i]}")
        out.extend([""] * blank)
    assert ast_hash("\n".join(out)) == ast_hash(GOOD)


# --------------------------------------------------------------------------- syntax


def test_syntax_error_reports_line() -> None:
    problems = check_contract(
        "import math\n\ndef generate(space, n, rng, llm=None)\n    return []\n"
    )
    assert len(problems) == 1
    assert problems[0].kind == "syntax_error" and problems[0].line == 3
    with pytest.raises(ContractError) as info:
        load_program("x = (\n")
    assert info.value.kind == "syntax_error"
    assert "syntax error" in str(info.value)


def test_compile_time_errors_are_syntax_errors() -> None:
    (problem,) = check_contract(
        "return 1\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    )
    assert problem.kind == "syntax_error" and "outside function" in problem.message


def test_null_bytes_are_a_syntax_error() -> None:
    (problem,) = check_contract("x = 1\0\n")
    assert problem.kind == "syntax_error"


def test_syntax_error_raises_even_unchecked() -> None:
    with pytest.raises(ContractError):
        load_program("def generate(:\n", check=False)


# --------------------------------------------------------------------------- entry point


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("x = 1\n", "no top-level function 'generate"),
        ("def generate(space, n, rng):\n    return []\n", "signature must be"),
        ("def generate(space, n, rng, llm):\n    return []\n", "only 'llm' may have a default"),
        ("def generate(space, n, rng, llm=0):\n    return []\n", "must be None"),
        ("def generate(space, n=3, rng=None, llm=None):\n    return []\n", "only 'llm'"),
        ("def generate(space, n, rng, llm=None, extra=1):\n    return []\n", "signature"),
        ("def generate(space, n, rng, *args, llm=None):\n    return []\n", "signature"),
        ("def generate(space, n, rng, llm=None, **kw):\n    return []\n", "signature"),
        ("def generate(space, n, rand, llm=None):\n    return []\n", "signature"),
        ("def generate(space, /, n, rng, llm=None):\n    return []\n", "signature"),
        ("async def generate(space, n, rng, llm=None):\n    return []\n", "must not be async"),
        ("class generate:\n    pass\n", "must be a function"),
        (
            "import functools\n\n@functools.cache\ndef generate(space, n, rng, llm=None):\n"
            "    return []\n",
            "must not be decorated",
        ),
        (
            "def generate(space, n, rng, llm=None):\n    return []\n\ngenerate = None\n",
            "only by one top-level def",
        ),
        (
            "def generate(space, n, rng, llm=None):\n    return []\n\n"
            "def generate(space, n, rng, llm=None):\n    return [1]\n",
            "more than once",
        ),
        (
            "if True:\n    def generate(space, n, rng, llm=None):\n        return []\n",
            "only by one top-level def",
        ),
    ],
)
def test_entry_point_violations(source: str, needle: str) -> None:
    found = messages(source)
    assert any(needle in m for m in found), found
    with pytest.raises(ContractError) as info:
        load_program(source)
    assert info.value.kind == "contract_violation"


def test_annotated_signature_is_fine() -> None:
    source = (
        "from typing import Any\n\n"
        "def generate(space: Any, n: int, rng: Any, llm: Any = None) -> list[dict]:\n"
        "    return []\n"
    )
    assert check_contract(source) == []


def test_local_name_generate_in_nested_scope_is_fine() -> None:
    source = (
        "def helper():\n    generate = 1\n    return generate\n\n"
        "def generate(space, n, rng, llm=None):\n    return [helper() for generate in range(1)]\n"
    )
    assert check_contract(source) == []


# --------------------------------------------------------------------------- imports & names


@pytest.mark.parametrize(
    "statement",
    [
        "import os",
        "import sys",
        "import subprocess",
        "import socket",
        "import time",
        "import os.path",
        "from os import path",
        "import numpy.ctypeslib",
        "from numpy import ctypeslib",
        "import scipy._lib",
        "from personaevo import sandbox",
        "import personaevo.sandbox",
        "from . import sibling",
        "from math import *",
        "import importlib",
        "import builtins",
        "import personaevo.spaces",
        "from personaevo import spaces",
        "from personaevo.llm.vllm_server import os",
        "from typing import sys",
        "from personaevo.evaluate import time",
        "from statistics import random",
        "import scipy.io",
        "from scipy import io",
        "from numpy import fromfile",
        "from numpy import datetime64",
        "from numpy import lib",
    ],
)
def test_forbidden_imports(statement: str) -> None:
    source = f"{statement}\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    problems = check_contract(source)
    assert problems and all(p.kind == "contract_violation" for p in problems)
    assert problems[0].line == 1


def test_random_is_refused_with_a_hint() -> None:
    (problem,) = check_contract(
        "import random\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    )
    assert "rng" in problem.message and problem.line == 1


@pytest.mark.parametrize(
    "statement",
    [
        "import numpy as np",
        "import numpy.linalg",
        "from numpy.random import Generator",
        "import scipy.stats.qmc",
        "from scipy.stats import qmc, norm",
        "from scipy import spatial",
        "import allpairspy",
        "from allpairspy import AllPairs",
        "import personaevo.generator_kit",
        "from personaevo import generator_kit",
        "from personaevo.generator_kit import traits_at",
        "import scipy.linalg",
        "import numpy as np\nx = np.linalg.norm",
        "from collections import defaultdict, Counter",
        "from dataclasses import dataclass",
        "from typing import Any",
        "import statistics, heapq, bisect, string, re, functools, itertools",
        "from __future__ import annotations",
    ],
)
def test_allowed_imports(statement: str) -> None:
    source = f"{statement}\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    assert check_contract(source) == [], statement


def test_allow_list_names_modules_not_roots() -> None:
    for module in ("math", "numpy", "numpy.linalg", "scipy.stats.qmc", "allpairspy"):
        assert module in ALLOWED_MODULES
    for module in ("random", "os", "sys", "subprocess", "socket", "scipy.io", "numpy.lib"):
        assert module not in ALLOWED_MODULES
    assert {m for m in ALLOWED_MODULES if m.split(".")[0] == "personaevo"} == {
        "personaevo",
        "personaevo.generator_kit",
    }


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import typing\nx = typing.sys", "'typing.sys'"),
        ("import numpy as np\nx = np.fromfile('/etc/passwd')", "reads or writes files"),
        ("import numpy as np\nx = np.datetime64('now')", "clock"),
        ("import scipy\nx = scipy.io", "'scipy.io' is not available"),
        ("import numpy as np\nx = np.lib.npyio", "'numpy.lib' is not available"),
        ("import personaevo\nx = personaevo.sandbox", "'personaevo.sandbox'"),
        ("import numpy as np\nx = getattr(np, 'fromfile')", "reads or writes files"),
        ("name = 'x'\nx = getattr(name, name)", "computed attribute name"),
        ("g = getattr", "may only be called"),
        ("import operator\nx = operator.attrgetter('real')", "computed name"),
        ("x = '{0.__class__}'.format(1)", "'__class__'"),
        ("import numpy as np\nx = np.random.SeedSequence()", "OS entropy"),
        ("from numpy.random import PCG64\nx = PCG64(None)", "OS entropy"),
        ("import numpy as np\nx = np.random.default_rng(None)", "not reproducible"),
    ],
)
def test_names_taken_from_allowed_modules_are_checked(source: str, needle: str) -> None:
    full = source + "\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    found = messages(full)
    assert any(needle in m for m in found), found


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nx = np.random.SeedSequence(3)",
        "import numpy as np\nx = np.random.Generator(np.random.PCG64(7))",
        "import numpy as np\nx = np.linalg.norm(np.ones(2))",
        "from scipy.stats import qmc\nx = qmc.Sobol",
        "import scipy.stats.qmc\nx = scipy.stats.qmc.Halton",
        "x = getattr(1, 'real', None)",
        "import math\nx = getattr(math, 'pi')",
    ],
)
def test_allowed_names_pass(source: str) -> None:
    full = source + "\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    assert messages(full) == []


def test_unreadable_and_binary_files_are_contract_errors(tmp_path: Path) -> None:
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ContractError) as info:
        load_program(binary)
    assert info.value.kind == "unreadable" and "UTF-8" in str(info.value)
    with pytest.raises(ContractError) as info:
        load_program(tmp_path / "missing.py")
    assert info.value.kind == "unreadable"
    empty = tmp_path / "empty.py"
    empty.write_text("")
    with pytest.raises(ContractError) as info:
        load_program(empty)
    assert info.value.kind == "contract_violation"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("return eval('[]')", "'eval'"),
        ("exec('x = 1')\n    return []", "'exec'"),
        ("return __import__('os').listdir('.')", "'__import__'"),
        ("return open('f').read()", "'open'"),
        ("return [].__class__.__bases__", "'.__class__'"),
        ("return getattr(rng, '__class__')", "getattr"),
        ("return __builtins__", "'__builtins__'"),
        ("return compile('1', 'f', 'eval')", "'compile'"),
        ("return globals()", "'globals'"),
        ("exit(1)", "'exit'"),
    ],
)
def test_forbidden_names(body: str, needle: str) -> None:
    source = f"def generate(space, n, rng, llm=None):\n    {body}\n"
    found = messages(source)
    assert any(needle in m and m.startswith("line 2") for m in found), found


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("import numpy as np\nx = np.random.rand(3)\n", True),
        ("import numpy\nnumpy.random.seed(0)\n", True),
        ("from numpy.random import normal\n", True),
        ("from numpy import random as npr\nnpr.shuffle([1])\n", True),
        ("import numpy as np\nr = np.random.default_rng()\n", True),
        ("import numpy as np\nr = np.random.default_rng(3)\n", False),
        ("import numpy as np\ng = np.random.Generator\n", False),
        ("from numpy.random import default_rng\nr = default_rng()\n", True),
    ],
)
def test_numpy_global_random_state_is_refused(source: str, bad: bool) -> None:
    full = source + "\ndef generate(space, n, rng, llm=None):\n    return []\n"
    found = messages(full)
    assert bool(found) is bad, found


def test_rng_argument_use_is_fine() -> None:
    source = (
        "def generate(space, n, rng, llm=None):\n"
        "    x = rng.random(n)\n    rng.shuffle(x)\n"
        "    return [{'id': i, 'traits': {'x': float(v)}} for i, v in enumerate(x)]\n"
    )
    assert check_contract(source) == []


def test_every_problem_is_reported_with_its_line() -> None:
    source = "import os\nimport random\n\ndef generate(space, n, rng):\n    return eval('[]')\n"
    with pytest.raises(ContractError) as info:
        load_program(source, name="multi")
    lines = sorted(p.line for p in info.value.problems if p.line is not None)
    assert lines == [1, 2, 4, 5]
    text = str(info.value)
    assert text.startswith("multi: contract violation")
    assert "line 4:" in text and "line 5:" in text


def test_unchecked_load_keeps_problems() -> None:
    source = "import os\n\ndef generate(space, n, rng, llm=None):\n    return []\n"
    program = load_program(source, check=False)
    assert not program.checked
    assert [p.line for p in program.problems] == [1]
    assert isinstance(program.problems[0], ContractProblem)


def test_contract_error_needs_problems() -> None:
    with pytest.raises(ValueError):
        ContractError([])
