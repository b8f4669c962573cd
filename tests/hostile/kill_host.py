"""Tries to SIGKILL the host process (pid given in space["host_pid"]) and everyone else."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    results = {}
    for name, target in (("host", space["host_pid"]), ("everyone", -1)):
        try:
            os.kill(target, 9)
            results[name] = "sent"
        except OSError as exc:
            results[name] = type(exc).__name__
    return [{"id": 0, "traits": results}]
