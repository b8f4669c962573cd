"""Asks numpy for 20 GB: must end as `memory`."""

import numpy as np


def generate(space, n, rng, llm=None):
    block = np.ones(20 * 2**30 // 8)
    return [{"id": 0, "traits": {"sum": float(block.sum())}}]
