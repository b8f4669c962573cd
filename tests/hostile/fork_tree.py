"""Bounded fork tree (2**4 = 16 processes) that then sleeps: `timeout`, and none may survive."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    for _ in range(4):
        os.fork()
    __import__("time").sleep(600)
