"""A controller's world made by the controller's own code, for the portal to read as a process.

`ControlledFleet` is the challenger side: simulated gateways send births and state reports to a
real `cloud.rounds.ControllerCore` (registry `cloud.registry.SqliteRegistry`), each round the core
publishes signed vectors, the gateways' flexible demand follows them (per tier, `p_off` of the
enabled flexible kW is disabled and `p_on` of the disabled is enabled again), and the rounds are
streamed to `rounds.csv` by the controller command's own `RoundsStream`, exactly as
`colorgrid controller --db registry.db --out DIR` leaves them.
"""
from __future__ import annotations

import time

from cloud.goals import ConstantGoal
from cloud.registry import SqliteRegistry
from cloud.rounds import ControllerCore
from colorgrid.commands.controller import RoundsStream
from edge_agent import codec, topics

TIERS = ["green", "yellow", "black"]
ROUND_MS = 2000
KEY = b"c" * 32


def now_ms() -> int:
    return int(time.time() * 1000)


class SimGateway:
    def __init__(self, gid: str, group: str, devices: int, tier_w: list[int]) -> None:
        self.gid, self.group, self.devices, self.tier_w = gid, group, devices, tier_w
        self.enabled = [float(devices * w) for w in tier_w]     # W per tier, all enabled at start
        self.disabled = [0.0] * len(tier_w)
        self.seq = 0
        self.vector_round_id = -1

    def birth(self, ts_ms: int) -> tuple[str, bytes]:
        devices = [{"device_id": f"d{i}", "tier_w": list(self.tier_w)} for i in range(self.devices)]
        return topics.birth(self.gid), codec.encode_birth(self.gid, self.group, 0, ts_ms, TIERS, devices,
                                                          {"round_ms": ROUND_MS})

    def state(self, ts_ms: int, round_index: int) -> tuple[str, bytes]:
        self.seq = self.seq % 255 + 1
        p_w, count = [], []
        for t in range(len(self.tier_w)):
            e, d = int(self.enabled[t]), int(self.disabled[t])
            n_e = round(self.devices * e / max(1, e + d))
            p_w.append([e, 0, d, 0])
            count.append([n_e, 0, self.devices - n_e, 0])
        return topics.state(self.gid), codec.encode_state(self.gid, self.group, 0, self.seq, ts_ms, round_index,
                                                          p_w, count, self.vector_round_id, False, 0)

    def death(self, ts_ms: int) -> tuple[str, bytes]:
        return topics.death(self.gid), codec.encode_death(self.gid, 0, ts_ms, "shutdown", seq=self.seq)

    def apply(self, vector: dict) -> None:
        for t, (p_on, p_off) in enumerate(zip(vector["p_on"], vector["p_off"])):
            off, on = self.enabled[t] * p_off, self.disabled[t] * p_on
            self.enabled[t] += on - off
            self.disabled[t] += off - on
        self.vector_round_id = vector["round_id"]


class ControlledFleet:
    """Gateways + a ControllerCore + rounds.csv. `silent` gateways are born and never report (their
    group gets no vector: the portal calls them stale); `die(gid)` ends a gateway's session."""

    def __init__(self, registry_path, rounds_path, groups: dict[str, float], gateways: list[SimGateway],
                 silent: tuple[str, ...] = (), history_rounds: int = 40) -> None:
        self.gateways = {g.gid: g for g in gateways}
        self.silent = set(silent)
        self.dead: set[str] = set()
        self.registry = SqliteRegistry(registry_path)
        self.core = ControllerCore("ctl1", ConstantGoal(groups), "k1", KEY, registry=self.registry,
                                   round_ms=ROUND_MS)
        self.t_ms = now_ms() - history_rounds * ROUND_MS
        self.stream = RoundsStream(rounds_path, self.t_ms)
        for g in gateways:
            self.core.handle(*g.birth(self.t_ms - 500), self.t_ms - 500)
        self.rounds(history_rounds, realtime=False)

    def rounds(self, n: int, realtime: bool = True) -> int:
        """Run `n` control rounds (the last at the wall clock's present when `realtime`); returns the
        last round id."""
        for _ in range(n):
            self.t_ms = max(self.t_ms + ROUND_MS, now_ms()) if realtime else self.t_ms + ROUND_MS
            report_ms = self.t_ms - ROUND_MS // 2
            for gid, g in sorted(self.gateways.items()):
                if gid not in self.silent and gid not in self.dead:
                    self.core.handle(*g.state(report_ms, self.t_ms // ROUND_MS), report_ms)
            for topic, payload, _qos, _retain in self.core.control_round(self.t_ms):
                vector = codec.decode_vector(payload)
                for g in self.gateways.values():
                    if g.group == vector["group"] and g.gid not in self.dead:
                        g.apply(vector)
            self.stream.write(self.core)
        return self.core.round_id

    def die(self, gid: str) -> None:
        self.core.handle(*self.gateways[gid].death(self.t_ms), self.t_ms)
        self.dead.add(gid)

    def close(self) -> None:
        self.stream.close()
        self.registry.close()
