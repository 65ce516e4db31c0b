"""Which MQTT version a broker speaks, asked once per process and broker. CPython-only (the
MicroPython transport, umqtt.simple, speaks MQTT 3.1.1 only).

    speaks_v5("127.0.0.1", 1883)  -> True (mosquitto 2, EMQX, HiveMQ, VerneMQ) | False (amqtt)

Why a probe: a broker that speaks only 3.1.1 answers a bare MQTT 5 CONNECT with CONNACK
"unsupported protocol version" (reason 132 / 3.1.1 return code 1), but amqtt 0.12 does not answer
at all when the CONNECT carries properties (a session expiry): the clients would time out instead
of downgrading. So the probe sends the barest MQTT 5 CONNECT (clean start, no properties, its own
client id), reads the CONNACK, sends DISCONNECT, and the clients (edge_agent.transport_paho,
firmware_sim.mux_transport, cloud.mqtt5) pick MQTT 5 or 3.1.1 from the answer.
A network error raises OSError (nothing is cached: the caller's reconnect policy retries).
"""
from __future__ import annotations

import os
import socket
import struct
import threading

UNSUPPORTED_PROTOCOL = (132, 1)        # MQTT 5 CONNACK reason code / MQTT 3.1.1 return code
SESSION_EXPIRY_S = 3600                # default session expiry of the persistent MQTT 5 sessions
_known: dict[tuple[str, int], bool] = {}
_lock = threading.Lock()


def _connect_packet(client_id: bytes) -> bytes:
    var = b"\x00\x04MQTT\x05\x02\x00\x0a\x00"          # MQTT 5, clean start, keepalive 10, no props
    body = var + struct.pack("!H", len(client_id)) + client_id
    return b"\x10" + bytes([len(body)]) + body          # body < 128 bytes: one length byte


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("broker closed the connection during the MQTT version probe")
        out += chunk
    return out


def probe(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """Ask the broker (no cache): True if it accepts MQTT 5, False if it refuses the version."""
    client_id = ("colorgrid-probe-%d-%d" % (os.getpid(), threading.get_ident() % 100000)).encode()
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(_connect_packet(client_id))
        head = _read_exact(sock, 2)
        if head[0] >> 4 != 2:
            raise ConnectionError("MQTT version probe: expected CONNACK, got packet type %d" % (head[0] >> 4))
        body = _read_exact(sock, head[1]) if head[1] < 128 else _read_exact(sock, 2)
        code = body[1]
        if code in UNSUPPORTED_PROTOCOL:
            return False
        # accepted (0), or refused in MQTT 5's own terms (135 not authorized without credentials,
        # ...): either way the broker parsed an MQTT 5 CONNECT and answered in MQTT 5
        if code == 0:
            try:
                sock.sendall(b"\xe0\x00")
            except OSError:
                pass
        return True


def speaks_v5(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """`probe` once per (host, port) and process; the answer is kept."""
    key = (host, int(port))
    with _lock:
        if key in _known:
            return _known[key]
    answer = probe(host, port, timeout_s)
    with _lock:
        _known[key] = answer
    return answer


def forget(host: str, port: int) -> None:
    """Drop the kept answer (a broker replaced by another kind on the same address)."""
    with _lock:
        _known.pop((host, int(port)), None)
