"""Grows memory in 64 MB steps until something gives: must end as `memory`."""


def generate(space, n, rng, llm=None):
    hoard = []
    while True:
        hoard.append(bytearray(64 * 2**20))
