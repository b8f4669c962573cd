"""SIGKILLs its parent (the sandbox worker), then returns personas as if nothing happened."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    os.kill(os.getppid(), 9)
    __import__("time").sleep(0.5)
    return [{"id": 0, "traits": {}}]
