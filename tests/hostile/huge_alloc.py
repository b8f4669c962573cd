"""Asks for 20 GB at once: must end as `memory`."""


def generate(space, n, rng, llm=None):
    block = bytearray(20 * 2**30)
    return [{"id": 0, "traits": {"size": len(block)}}]
