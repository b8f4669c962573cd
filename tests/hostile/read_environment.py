"""Reports its environment, uid, working directory and what the working directory allows."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    cwd = os.getcwd()
    with __import__("builtins").open("scratch.txt", "w") as fh:
        fh.write("scratch")
    traits = {
        "env": dict(os.environ),
        "uid": os.getuid(),
        "cwd": cwd,
        "listing": sorted(os.listdir(".")),
        "hostname": __import__("socket").gethostname(),
    }
    return [{"id": 0, "traits": traits}]
