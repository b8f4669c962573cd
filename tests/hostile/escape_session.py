"""Leaves a grandchild in a new session (escaping the process group) and returns normally.

The run succeeds; the sandbox must still kill the grandchild once the program is done.
"""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write_end, str(os.getpid()).encode())
            __import__("time").sleep(600)
        os._exit(0)
    os.close(write_end)
    pid = int(os.read(read_end, 64))
    return [{"id": 0, "traits": {"grandchild": pid}}]
