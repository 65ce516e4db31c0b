"""MicroPython board entry point (ESP32, Pico W, ...): Wi-Fi, NTP, umqtt, the gateway agent.

Install (docs/deploy-raspberry-pi.md, section "MicroPython board"):
    mpremote mip install umqtt.simple
    mpremote cp -r edge_agent :lib/        # the core modules (no *paho*, *cli* files needed)
    mpremote cp config.json :config.json   # same sections as gateway.toml, plus "wifi"
    mpremote cp edge_agent/main.py :main.py
The board then runs ``main()`` at boot. config.json example:

    {"wifi": {"ssid": "lab", "password": "..."},
     "gateway": {"id": "gw-7", "group": "bus1.a", "seed": 7},
     "broker": {"host": "192.168.1.10", "port": 1883, "username": "gw-7", "password": "...",
                "keepalive_s": 10},
     "security": {"keys": {"k1": "<hex>"}, "vector_max_ttl_ms": 60000,
                  "report_key": {"gw-7": "<hex>"}},   (optional: signs this gateway's reports)
     "agent": {"store_capacity": 64},
     "params": {"k": 3, "round_s": 2, "fail_safe_s": 60},
     "devices": [{"id": "heater", "rated_w": 2000, "tier_shares": [0.5, 0.5, 0.0], "pin": 5}]}

A device with a ``pin`` drives a relay on that GPIO (on while any of its demand is enabled);
without one it is a ConstantDevice (useful on a bench). Wall time on the wire is UTC epoch ms:
``ntptime`` sets the RTC, and ports whose epoch is 2000-01-01 are shifted to 1970.
"""
import json
import time

from edge_agent import keyfile
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport_umqtt import UmqttTransport

EPOCH_2000_S = 946684800


class RelayDevice(ConstantDevice):
    """A constant load switched by a relay on a GPIO pin (on iff enabled watts > 0)."""

    kind = "relay"

    def __init__(self, device_id, rated_w, tier_shares, pin):
        ConstantDevice.__init__(self, device_id, rated_w, tier_shares)
        import machine
        pin_class = getattr(machine, "Pin")  # board ports have machine.Pin (the unix port not)
        self.pin = pin_class(pin, getattr(pin_class, "OUT"))
        self.pin.value(1)

    def write(self, enabled_w, now_ms):
        ConstantDevice.write(self, enabled_w, now_ms)
        self.pin.value(1 if enabled_w > 0 else 0)


def epoch_offset_ms() -> int:
    """ms to add to time.time() for UTC epoch ms (ports with a 2000 epoch)."""
    return EPOCH_2000_S * 1000 if time.gmtime(0)[0] == 2000 else 0


def utc_ms(offset_ms: int) -> int:
    return time.time_ns() // 1000000 + offset_ms


def connect_wifi(ssid: str, password: str, timeout_s: int = 30) -> None:
    import network  # type: ignore[import-not-found]
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, password)
        start = time.time()
        while not wlan.isconnected():
            if time.time() - start > timeout_s:
                raise OSError("wifi: no connection to %s within %d s" % (ssid, timeout_s))
            time.sleep(1)


def sync_clock() -> None:
    import ntptime  # type: ignore[import-not-found]
    ntptime.settime()


def make_devices(entries, k):
    devices = []  # type: list
    for d in entries:
        if "pin" in d:
            devices.append(RelayDevice(d["id"], d["rated_w"], d["tier_shares"], d["pin"]))
        else:
            devices.append(ConstantDevice(d["id"], d["rated_w"], d["tier_shares"]))
    return devices


def build_agent(cfg: dict, transport_factory=None) -> GatewayAgent:
    gw, brk, sec = cfg["gateway"], cfg["broker"], cfg["security"]
    agt = cfg.get("agent", {})
    params = AgentParams.from_dict(cfg.get("params", {}))
    core = GatewayCore(gw["id"], make_devices(cfg["devices"], params.k), params,
                       seed=gw.get("seed", 1))
    factory = transport_factory or UmqttTransport
    transport = factory(brk["host"], brk.get("port", 1883), "colorgrid-gw-" + gw["id"],
                        user=brk.get("username"), password=brk.get("password"),
                        keepalive_s=brk.get("keepalive_s", 10))
    keys = keyfile.parse_key_table(sec["keys"], "security.keys")
    report_key_id, report_key = None, None
    if "report_key" in sec:   # the gateway's own key (its enrollment record holds the same)
        table = keyfile.parse_key_table(sec["report_key"], "security.report_key")
        report_key_id = sorted(table)[0]
        report_key = table[report_key_id]
    return GatewayAgent(core, transport, gw["id"], gw["group"], keys,
                        Prng(gw.get("seed", 1) ^ 0x5EED),
                        store_capacity=agt.get("store_capacity", 64),
                        backoff_base_ms=agt.get("backoff_base_ms", 500),
                        backoff_cap_ms=agt.get("backoff_cap_ms", 30000),
                        vector_max_ttl_ms=sec.get("vector_max_ttl_ms", 60000),
                        report_key=report_key, report_key_id=report_key_id)


def main(path: str = "config.json") -> None:
    with open(path) as fh:
        cfg = json.load(fh)
    if "wifi" in cfg:
        connect_wifi(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
        sync_clock()
    offset = epoch_offset_ms()
    agent = build_agent(cfg)
    agent.run_forever(lambda: utc_ms(offset), time.sleep_ms)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
