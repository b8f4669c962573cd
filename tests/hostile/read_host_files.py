"""Reads host files (as numpy.fromfile did in the report) and lists what it can see."""

import numpy as np


def generate(space, n, rng, llm=None):
    os = __import__("os")
    traits = {}
    for path in space["read"]:
        try:
            traits[path] = "read: " + np.fromfile(path, dtype=np.uint8, count=64).tobytes().decode(
                "latin-1"
            )
        except Exception as exc:
            traits[path] = type(exc).__name__
    for path in space["list"]:
        try:
            traits[path] = sorted(os.listdir(path))
        except Exception as exc:
            traits[path] = type(exc).__name__
    for module in space["import"]:
        try:
            __import__(module)
            traits[module] = "imported"
        except Exception as exc:
            traits[module] = f"{type(exc).__name__}: {exc}"
    return [{"id": 0, "traits": traits}]
