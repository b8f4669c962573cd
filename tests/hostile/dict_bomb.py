"""A persona whose profile is millions of empty dicts: tiny to write, ~24x its size in
host memory if parsed as it is (the report's 60 MB of JSON took the host to 1.8 GB)."""


def generate(space, n, rng, llm=None):
    return [{"id": 0, "traits": {"x": 1}, "profile": [{}] * space["count"]}]
