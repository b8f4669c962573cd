"""Burns CPU past the CPU limit but within the wall limit: `timeout` via RLIMIT_CPU."""


def generate(space, n, rng, llm=None):
    x = 0
    while True:
        x += 1
