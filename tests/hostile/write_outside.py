"""Tries to create each file in space["paths"] (absolute or relative to its working dir).

Returns one persona per path with the outcome; the test checks the files do not exist.
"""


def generate(space, n, rng, llm=None):
    builtins = __import__("builtins")
    out = []
    for i, path in enumerate(space["paths"]):
        try:
            with builtins.open(path, "w") as fh:
                fh.write("pwned")
            outcome = "written"
        except OSError as exc:
            outcome = type(exc).__name__
        out.append({"id": i, "traits": {"path": path, "outcome": outcome}})
    return out
