"""A private MQTT broker for demos, benches and tests: a `mosquitto` child on a free loopback port,
or (when the binary is missing) an embedded pure-Python broker (amqtt, MQTT 3.1.1 only) in a
child Python process.

    broker = start_broker()            # mosquitto if found, else amqtt
    broker.url                         # "mqtt://127.0.0.1:PORT"
    broker.stop()                      # SIGTERM (mosquitto saves its persistence file), then wait

`MosquittoBroker(persistence=True)` keeps sessions and queued QoS-1 messages in a folder so that a
`stop()` + `start()` on the same port behaves like a broker restart (persistent sessions survive).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_agent import urls


def _die_with_parent() -> None:
    """Child-side (Linux): SIGTERM the broker when the process that started it dies, so a killed
    test or demo never leaves a broker behind; elsewhere a no-op."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _spawn(cmd: list[str], log) -> subprocess.Popen:
    """Start a broker child in its own session (Ctrl-C on the demo does not reach it first)."""
    return subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent)


def _stop_child(proc: subprocess.Popen | None, hard: bool) -> None:
    """SIGTERM (graceful; mosquitto saves its persistence file) or SIGKILL when `hard`; waits for
    the exit, killing after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class BrokerError(RuntimeError):
    """The broker could not be started (binary missing, port never opened, child died)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"broker did not open port {port} within {timeout_s} s")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for cand in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"):
        if os.access(cand, os.X_OK):
            return cand
    return None


class MosquittoBroker:
    """A mosquitto child process bound to 127.0.0.1:`port` (free port when None)."""

    kind = "mosquitto"

    def __init__(self, port: int | None = None, persistence: bool = False, workdir: str | None = None,
                 extra_conf: str = "") -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="colorgrid-mosq-"))
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen | None = None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 10000",
            "max_inflight_messages 100",
            "set_tcp_nodelay true",
            "user root" if os.geteuid() == 0 else "",   # no privilege drop: it would cancel PDEATHSIG
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_conf)

    def start(self, timeout_s: float = 10.0) -> "MosquittoBroker":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self._write_conf()
        log = open(self.log_path, "ab")
        self.proc = _spawn([self.binary, "-c", str(self.conf_path)], log)
        log.close()
        wait_port(self.port, timeout_s, self.proc)
        return self

    def stop(self, hard: bool = False) -> None:
        """SIGTERM (graceful: persistence saved) or SIGKILL when `hard`; waits for the exit."""
        _stop_child(self.proc, hard)
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "MosquittoBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


_AMQTT_CHILD = """
import asyncio, sys
from amqtt.broker import Broker
async def main(port):
    cfg = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
           "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
    broker = Broker(cfg)
    await broker.start()
    await asyncio.Event().wait()
asyncio.run(main(int(sys.argv[1])))
"""


class EmbeddedBroker:
    """amqtt (pure Python, MQTT 3.1.1 only) in a child Python process; the fallback broker."""

    kind = "amqtt"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> "EmbeddedBroker":
        try:
            import amqtt  # noqa: F401
        except ImportError as exc:
            raise BrokerError("no mosquitto binary and the embedded broker needs `pip install amqtt`") from exc
        self.proc = _spawn([sys.executable, "-c", _AMQTT_CHILD, str(self.port)], subprocess.DEVNULL)
        wait_port(self.port, timeout_s, self.proc)
        return self

    def stop(self, hard: bool = False) -> None:
        _stop_child(self.proc, hard)
        self.proc = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def start_broker(prefer: str = "auto") -> MosquittoBroker | EmbeddedBroker:
    """Start a private broker: mosquitto when available (or `prefer='mosquitto'`), else amqtt."""
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise BrokerError(f"prefer: expected auto|mosquitto|amqtt, got {prefer!r}")
    if prefer != "amqtt" and mosquitto_binary() is not None:
        return MosquittoBroker().start()
    if prefer == "mosquitto":
        raise BrokerError("mosquitto binary not found (apt-get install mosquitto)")
    return EmbeddedBroker().start()


def parse_broker_url(url: str) -> tuple[str, int]:
    """'mqtt://host[:port]' (port default 1883) → (host, port) by `edge_agent.urls`; anything else
    raises BrokerError naming the field."""
    try:
        host, port, _ = urls.parse_broker_url(url, "broker", tls_allowed=False)
    except urls.UrlError as exc:
        raise BrokerError(str(exc)) from None
    return host, port
