"""Writes a fake successful result straight to the result channel, then never finishes."""


def generate(space, n, rng, llm=None):
    os = __import__("os")
    fake = b'{"v":1,"status":"ok","personas":[{"id":1,"traits":{}}],"program_seconds":0}'
    os.write(3, fake)
    os.close(3)
    while True:
        pass
