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
import subprocess
from pathlib import Path

import pytest

from firmware_sim.broker import MosquittoBroker, free_port  # noqa: F401  (free_port re-exported for tests)


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


class Mosquitto(MosquittoBroker):
    """The shared mosquitto child (firmware_sim.broker) with test-only configuration: password
    file, ACL, or a deployment config run as is with test paths and port."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, acl: str | None = None,
                 persistence: bool = True, port: int | None = None,
                 deploy_conf: str | None = None) -> None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        super().__init__(port=port, persistence=persistence, workdir=str(workdir))
        self.host = "127.0.0.1"
        if deploy_conf is not None:
            self._conf_text = self._from_deploy_conf(deploy_conf, users or {}, acl)
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
        self._conf_text = "\n".join(lines) + "\n"

    def _from_deploy_conf(self, text: str, users: dict[str, str], acl: str | None) -> str:
        """Use a deployment config as is, except its listener, file paths and run-as user."""
        write_password_file(self.workdir / "passwd", users)
        (self.workdir / "acl").write_text(acl or "")
        swap = {"listener": f"listener {self.port} 127.0.0.1",
                "password_file": f"password_file {self.workdir / 'passwd'}",
                "acl_file": f"acl_file {self.workdir / 'acl'}",
                "persistence_location": f"persistence_location {self.workdir}/",
                "log_dest": "log_dest stderr", "user": "user root"}
        lines = [swap.get(line.split(" ", 1)[0], line) for line in text.splitlines()]
        if "user root" not in lines:
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def _write_conf(self) -> None:
        self.conf_path.write_text(self._conf_text)

    def kill(self) -> None:
        """SIGKILL: no persistence save."""
        self.stop(hard=True)


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
