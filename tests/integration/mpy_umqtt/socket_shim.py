"""MicroPython's `socket` API, as umqtt.simple uses it, over CPython's socket module.

MicroPython sockets are streams: ``write(buf[, n])`` sends the first n bytes of buf (all of them
on a blocking socket) and ``read(n)`` returns exactly n bytes on a blocking socket (fewer only at
EOF, ``b""`` at EOF with nothing read), and on a non-blocking one whatever is buffered, or
``None`` when nothing is (EAGAIN). CPython's socket has ``send``/``recv`` instead; this class
gives the MicroPython names and semantics (py/stream.c ``mp_stream_rw``).
"""
from __future__ import annotations

import socket as _socket


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return _socket.getaddrinfo(host, port, _socket.AF_INET, _socket.SOCK_STREAM)


class socket:  # noqa: N801  (MicroPython's name)
    def __init__(self, af=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0) -> None:
        self._s = _socket.socket(af, type, proto)
        self._blocking = True

    def connect(self, addr) -> None:
        self._s.connect(addr)

    def settimeout(self, timeout) -> None:
        self._s.settimeout(timeout)
        self._blocking = timeout != 0

    def setblocking(self, flag) -> None:
        self._s.setblocking(bool(flag))
        self._blocking = bool(flag)

    def write(self, buf, n=None) -> int:
        data = memoryview(buf)
        if n is not None:
            data = data[:n]
        if self._blocking:
            self._s.sendall(data)
            return len(data)
        try:
            return self._s.send(data)
        except BlockingIOError:
            return None

    def read(self, n):
        if not self._blocking:
            try:
                return self._s.recv(n)
            except BlockingIOError:
                return None
        out = b""
        while len(out) < n:
            chunk = self._s.recv(n - len(out))
            if not chunk:
                break          # EOF: what was read (b"" when nothing)
            out += chunk
        return out

    def close(self) -> None:
        self._s.close()
