"""A private mosquitto child for tests: free loopback port, optional password file + ACL,
persistence so that stop()/start() on the same port is a broker restart with sessions kept.

    from tests.broker import mosquitto            # the pytest fixture (a factory)

    def test_x(mosquitto):
        broker = mosquitto()                      # anonymous, persistence on
        broker = mosquitto(users={"gw-1": "pw"}, acl=ACL_TEXT)
        broker.host, broker.port, broker.url
        broker.stop(); broker.start()             # restart, same port, sessions kept
        broker.kill()                             # SIGKILL (no persistence save)

Every child started through the fixture is killed at teardown. A missing mosquitto binary is a
test failure, not a skip (scripts/test.sh installs it).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    found = shutil.which(name)
    for cand in (found, f"/usr/sbin/{name}", f"/usr/local/sbin/{name}", f"/usr/bin/{name}"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(f"{name} not found: install mosquitto (scripts/test.sh does)")


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """Create a mosquitto password file with `mosquitto_passwd -b` (hashed entries)."""
    tool = find_binary("mosquitto_passwd")
    path.write_text("")
    for user, password in sorted(users.items()):
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)


class Mosquitto:
    """One mosquitto child bound to 127.0.0.1:port, configured from a temp folder."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, acl: str | None = None,
                 persistence: bool = True, port: int | None = None,
                 deploy_conf: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        if deploy_conf is not None:
            self._from_deploy_conf(deploy_conf, users or {}, acl)
            return
        lines = [f"listener {self.port} 127.0.0.1", "user root"]
        if users is not None:
            write_password_file(self.workdir / "passwd", users)
            lines += ["allow_anonymous false", f"password_file {self.workdir / 'passwd'}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            (self.workdir / "acl").write_text(acl)
            lines.append(f"acl_file {self.workdir / 'acl'}")
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/",
                      "autosave_interval 0"]
        lines += ["max_queued_messages 10000", "log_type error", "log_type warning"]
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def _from_deploy_conf(self, text: str, users: dict[str, str], acl: str | None) -> None:
        """Use a deployment config as is, except its listener, file paths and run-as user."""
        write_password_file(self.workdir / "passwd", users)
        (self.workdir / "acl").write_text(acl or "")
        swap = {"listener": f"listener {self.port} 127.0.0.1",
                "password_file": f"password_file {self.workdir / 'passwd'}",
                "acl_file": f"acl_file {self.workdir / 'acl'}",
                "persistence_location": f"persistence_location {self.workdir}/",
                "log_dest": "log_dest stderr", "user": "user root"}
        lines = []
        for line in text.splitlines():
            key = line.split(" ", 1)[0]
            lines.append(swap.get(key, line))
        if "user root" not in lines:
            lines.append("user root")
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "Mosquitto":
        log = open(self.workdir / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(self.workdir / "mosquitto.conf")],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): "
                                   + (self.workdir / "mosquitto.log").read_text()[-2000:])
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not open port {self.port} in {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file (sessions, queued QoS-1) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path):
    """Factory fixture: ``mosquitto(users=None, acl=None, persistence=True, deploy_conf=None)``
    -> started broker (``deploy_conf``: a deployment config text run with test paths/port)."""
    started: list[Mosquitto] = []

    def make(users=None, acl=None, persistence=True, deploy_conf=None) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(started)}", users, acl, persistence,
                           deploy_conf=deploy_conf)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.kill()
