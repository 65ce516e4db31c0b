"""The world of `colorgrid serve --demo`: a private broker, the cloud controller and a simulated
gateway fleet, all on real time, leaving what `colorgrid controller --db --out` leaves (the
registry, `rounds.csv`) in one folder for the portal to serve.

- broker: `firmware_sim.broker.start_broker` (a mosquitto child on a free loopback port, or the
  embedded amqtt broker when mosquitto is missing), as `colorgrid demo`;
- fleet: `firmware_sim.gateway_fleet.FleetProcesses` (the real edge_agent code, multiplexed in one
  worker process by default), every gateway signing its reports with its own enrolled key;
- controller: `cloud` `ControllerCore` in a `ControllerThread`, goal `dispatch:regulation` — the
  regulation signal until a stakeholder submits a goal schedule through the portal, which the
  portal signs with the demo's dispatch key and publishes to the broker;
- `DIR/registry.db` (the controller's registry), `DIR/ctl/rounds.csv` (per round and group),
  `DIR/dispatch.key` (hex).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

DISPATCH_KEY_ID = "dispatch"


class DemoWorld:
    def __init__(self, folder: Path, gateways: int, devices_per_gateway: int, groups: int, seed: int,
                 round_s: float = 2.0, goal: str = "dispatch:regulation") -> None:
        self.folder = Path(folder)
        self.gateways, self.devices, self.groups, self.seed = gateways, devices_per_gateway, groups, seed
        self.round_s, self.goal = round_s, goal
        self.broker = self.fleet = self.ctl = self.stream = None
        self.registry_path = self.folder / "registry.db"
        self.results = self.folder
        self.rounds_path = self.folder / "ctl" / "rounds.csv"
        self.dispatch_key_path = self.folder / "dispatch.key"
        self.core = None

    @property
    def broker_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker.port}"

    def start(self) -> "DemoWorld":
        """Broker, fleet, controller; raises (BrokerError, FleetError, RuntimeError) and cleans up."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from cloud.clock import SimClock
        from cloud.enrollment import Enrollment, GatewayPolicy, enroll_fleet
        from colorgrid.commands.controller import RoundsStream, core_from_args
        from firmware_sim.broker import start_broker
        from firmware_sim.closed_loop import ControllerThread
        from firmware_sim.gateway_fleet import FleetProcesses, FleetSpec

        (self.folder / "ctl").mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"colorgrid-serve-demo-key-{self.seed}".encode()).digest()
        report_seed = hashlib.sha256(f"colorgrid-serve-demo-report-key-{self.seed}".encode()).digest()
        dispatch_key = hashlib.sha256(f"colorgrid-serve-demo-dispatch-key-{self.seed}".encode()).digest()
        self.dispatch_key_path.write_text(dispatch_key.hex() + "\n")
        self.broker = start_broker("auto")
        clock = SimClock(1.0)
        spec = FleetSpec("127.0.0.1", self.broker.port, gateways=self.gateways,
                         devices_per_gateway=self.devices, groups=self.groups, seed=self.seed,
                         round_s=self.round_s, clock_spec=clock.spec(), key_id="k1", key=key,
                         report_key_seed=report_seed)
        policy = GatewayPolicy(Enrollment.parse(enroll_fleet(spec.report_keys())))
        args = argparse.Namespace(goal=self.goal, round_s=self.round_s, db=str(self.registry_path),
                                  dispatch_key_file=str(self.dispatch_key_path), dispatch_key_id=DISPATCH_KEY_ID)
        self.core = core_from_args(args, "k1", key, clock.origin_ms, "demo", policy=policy)
        self.stream = RoundsStream(self.rounds_path, clock.origin_ms)
        self.fleet = FleetProcesses(spec, 1).start()
        self.ctl = ControllerThread(self.core, "127.0.0.1", self.broker.port, clock)
        self.ctl.service.on_round = lambda n, ms: self.stream.write(self.core)
        self.ctl.start()

    def stop(self) -> None:
        """Fleet, controller, broker, in that order; errors while stopping are logged, not raised."""
        log = logging.getLogger("colorgrid.serve")
        if self.fleet is not None:
            try:
                self.fleet.stop(timeout_s=20)
            except Exception as exc:
                log.warning("demo fleet: %s", exc)
                self.fleet.kill()
            self.fleet = None
        if self.ctl is not None:
            try:
                self.ctl.stop()
            except Exception as exc:
                log.warning("demo controller: %s", exc)
            self.ctl = None
        if self.stream is not None:
            self.stream.close()
        if self.core is not None:
            self.core.registry.close()
            self.core = None
        if self.broker is not None:
            self.broker.close()
            self.broker = None
