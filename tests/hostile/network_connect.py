"""Connects to 127.0.0.1:space["port"] and sends a line: must fail under network isolation."""


def generate(space, n, rng, llm=None):
    socket = __import__("socket")
    with socket.create_connection(("127.0.0.1", space["port"]), timeout=1.0) as conn:
        conn.sendall(b"hello from the sandbox\n")
    return [{"id": 0, "traits": {"connected": True}}]
