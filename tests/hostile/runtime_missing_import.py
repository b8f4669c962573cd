"""Imports an allowed package's submodule that does not exist: `exception`."""

import scipy.no_such_submodule_xyz


def generate(space, n, rng, llm=None):
    return [{"id": 0, "traits": {"mod": scipy.no_such_submodule_xyz.__name__}}]
