"""Framing for the host <-> zygote control socket (a Unix socketpair).

A frame is a 12-byte header (4-byte tag, payload length, number of passed fds) then the
payload. File descriptors travel as SCM_RIGHTS attached to the header. Host -> zygote
payloads are pickles (the host is trusted); zygote -> host payloads are JSON.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import Any

HEADER = struct.Struct("!4sII")
MAX_FDS = 8

JOB = b"JOB "
KILL = b"KILL"
HELLO = b"HELO"
STARTED = b"STRT"
DONE = b"DONE"
FAILED = b"FAIL"


def send_frame(
    sock: socket.socket, tag: bytes, payload: bytes = b"", fds: Sequence[int] = ()
) -> None:
    """Send one frame, passing ``fds`` along with its header."""
    header = HEADER.pack(tag, len(payload), len(fds))
    if fds:
        sent = sock.sendmsg(
            [header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        )
        if sent < len(header):
            sock.sendall(header[sent:])
    else:
        sock.sendall(header)
    if payload:
        sock.sendall(payload)


def send_json(sock: socket.socket, tag: bytes, obj: Any) -> None:
    """Send a frame whose payload is ``obj`` as JSON."""
    send_frame(sock, tag, json.dumps(obj).encode())


class FrameReader:
    """Reassembles frames (and their fds) from bytes read off a stream socket."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fds: list[int] = []
        self.eof = False

    def recv(self, sock: socket.socket) -> bool:
        """Read what is available (one ``recvmsg``); False once the peer has closed."""
        data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, MAX_FDS)
        self._fds.extend(fds)
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True

    def frames(self) -> Iterator[tuple[bytes, bytes, list[int]]]:
        """Yield complete frames as (tag, payload, fds)."""
        while len(self._buf) >= HEADER.size:
            tag, size, nfds = HEADER.unpack_from(self._buf)
            if len(self._buf) < HEADER.size + size:
                return
            payload = bytes(self._buf[HEADER.size : HEADER.size + size])
            del self._buf[: HEADER.size + size]
            fds, self._fds = self._fds[:nfds], self._fds[nfds:]
            yield tag, payload, fds


def read_frame(sock: socket.socket, reader: FrameReader) -> tuple[bytes, bytes, list[int]] | None:
    """Block until one frame is complete; None when the peer closed first."""
    while True:
        for frame in reader.frames():
            return frame
        if not reader.recv(sock):
            return None
