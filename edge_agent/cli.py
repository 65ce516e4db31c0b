"""`colorgrid agent --config gateway.toml`: the gateway agent as a CPython service (Raspberry Pi).

CPython-only (tomllib, logging, signal, paho). The config file (see docs/deploy-raspberry-pi.md
and deploy/gateway.example.toml):

    [gateway]   id, group, seed (1), bd_seq_file (optional: persist the birth/death counter)
    [broker]    url ("mqtt://host:port" or "mqtts://..."), username, password | password_file,
                keepalive_s (10), ca_certs (TLS)
    [security]  keys = {key_id = "hex"} | key_file (hex text -> key id "k1", or JSON
                {key_id: hex}); vector_max_ttl_ms (60000)
    [agent]     store_capacity (256), backoff_base_ms (500), backoff_cap_ms (30000)
    [params]    edge_agent.params.AgentParams fields (k, tier_names, round_s, t_ef_s, ...)
    [[devices]] id, kind ("constant" | "thermostatic"), rated_w, tier_shares, and for
                thermostatic the ThermostaticDevice options (setpoint_c, deadband_c, ...)

A bad config exits with code 2 and one message naming the field (``ConfigError``).
"""
from __future__ import annotations

import binascii
import json
import logging
import signal
import time
import tomllib
from pathlib import Path
from urllib.parse import urlparse

from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice, ThermostaticDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.states import STATE_NAMES
from edge_agent.transport_paho import PahoTransport

log = logging.getLogger("colorgrid.agent")
SECTIONS = ("gateway", "broker", "security", "agent", "params", "devices")
THERMOSTAT_OPTIONS = ("setpoint_c", "deadband_c", "ambient_c", "ua_w_per_c", "c_j_per_c",
                      "theta0_c", "mode", "cop")


class ConfigError(ValueError):
    """A gateway config value is missing or wrong; the message names the field."""


def _get(table: dict, name: str, where: str, kind, default=None, required=False):
    if name not in table:
        if required:
            raise ConfigError(f"{where}.{name}: missing")
        return default
    value = table[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}.{name}: expected an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}.{name}: expected a string, got {value!r}")
    return value


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
        raise ConfigError(f"broker.url: expected mqtt://host[:port] or mqtts://..., got {url!r}")
    tls = parsed.scheme == "mqtts"
    return parsed.hostname, parsed.port or (8883 if tls else 1883), tls


def _read_secret(base: Path, name: str, field: str) -> str:
    try:
        return (base / name).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {name}: {exc.strerror}") from None


def read_keys(sec: dict, base: Path) -> dict[str, bytes]:
    if "keys" in sec:
        spec = sec["keys"]
    elif "key_file" in sec:
        text = _read_secret(base, sec["key_file"], "security.key_file")
        spec = json.loads(text) if text.startswith("{") else {"k1": text}
    else:
        raise ConfigError("security.keys: missing (or security.key_file)")
    if not isinstance(spec, dict) or not spec:
        raise ConfigError("security.keys: expected a table {key_id = \"hex\"}")
    try:
        return security.parse_keys(spec)
    except codec.CodecError as exc:
        raise ConfigError(f"security.{exc}") from None


def make_devices(entries, k: int) -> list:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("devices: expected at least one [[devices]] entry")
    devices = []
    for i, d in enumerate(entries):
        where = f"devices[{i}]"
        dev_id = _get(d, "id", where, str, required=True)
        if not topics.valid_id(dev_id):
            raise ConfigError(f"{where}.id: not an identifier (A-Z a-z 0-9 _ . -): {dev_id!r}")
        rated = _get(d, "rated_w", where, int, required=True)
        shares = d.get("tier_shares")
        if not isinstance(shares, list) or len(shares) != k:
            raise ConfigError(f"{where}.tier_shares: expected {k} shares summing to 1")
        kind = _get(d, "kind", where, str, "constant")
        try:
            if kind == "constant":
                devices.append(ConstantDevice(dev_id, rated, shares))
            elif kind == "thermostatic":
                opts = {key: d[key] for key in THERMOSTAT_OPTIONS if key in d}
                devices.append(ThermostaticDevice(dev_id, rated, shares, **opts))
            else:
                raise ConfigError(f"{where}.kind: expected constant or thermostatic, got {kind!r}")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{where}: {exc}") from None
    return devices


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: not valid TOML: {exc}") from None
    for key in cfg:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section (expected {', '.join(SECTIONS)})")
    cfg["_base"] = path.parent
    return cfg


def build_agent(cfg: dict, broker_url: str | None = None) -> GatewayAgent:
    """Everything the config describes, wired together (raises ConfigError)."""
    gw, brk, sec = cfg.get("gateway", {}), cfg.get("broker", {}), cfg.get("security", {})
    agt = cfg.get("agent", {})
    gateway_id = _get(gw, "id", "gateway", str, required=True)
    group = _get(gw, "group", "gateway", str, required=True)
    for name, value in (("gateway.id", gateway_id), ("gateway.group", group)):
        if not topics.valid_id(value):
            raise ConfigError(f"{name}: not an identifier (A-Z a-z 0-9 _ . -, 1..64): {value!r}")
    try:
        params = AgentParams.from_dict(cfg.get("params", {}))
    except ValueError as exc:
        raise ConfigError(f"params.{exc}") from None
    devices = make_devices(cfg.get("devices"), params.k)
    core = GatewayCore(gateway_id, devices, params, seed=_get(gw, "seed", "gateway", int, 1))
    host, port, tls = parse_broker_url(broker_url or _get(brk, "url", "broker", str, required=True))
    password = _get(brk, "password", "broker", str)
    if "password_file" in brk:
        password = _read_secret(cfg["_base"], brk["password_file"], "broker.password_file")
    ca_certs = _get(brk, "ca_certs", "broker", str)
    if tls and not ca_certs:
        raise ConfigError("broker.ca_certs: required for mqtts://")
    transport = PahoTransport(host, port, "colorgrid-gw-" + gateway_id,
                              username=_get(brk, "username", "broker", str), password=password,
                              keepalive_s=_get(brk, "keepalive_s", "broker", int, 10),
                              ca_certs=ca_certs)
    bd_seq = 255
    bd_file = gw.get("bd_seq_file")
    if bd_file and Path(bd_file).exists():
        bd_seq = int(Path(bd_file).read_text().strip() or 255)
    return GatewayAgent(
        core, transport, gateway_id, group, read_keys(sec, cfg["_base"]),
        Prng(_get(gw, "seed", "gateway", int, 1) ^ 0x5EED),
        store_capacity=_get(agt, "store_capacity", "agent", int, 256),
        backoff_base_ms=_get(agt, "backoff_base_ms", "agent", int, 500),
        backoff_cap_ms=_get(agt, "backoff_cap_ms", "agent", int, 30000),
        vector_max_ttl_ms=_get(sec, "vector_max_ttl_ms", "security", int, 60000),
        bd_seq=bd_seq, log=lambda level, msg: log.log(getattr(logging, level.upper()), msg))


def report_columns(agent: GatewayAgent) -> list[str]:
    cols = ["ts_ms", "round", "fail_safe", "vector_round_id", "store_depth", "connected"]
    for name in agent.core.params.tier_names:
        cols += [f"{name}_{s}_w" for s in STATE_NAMES]
    return cols


def run(cfg: dict, broker_url: str | None, duration_s: float | None, out_dir) -> int:
    from colorgrid.results import RunOutput

    agent = build_agent(cfg, broker_url)
    bd_file = cfg.get("gateway", {}).get("bd_seq_file")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    rows: list[list] = []
    clock_ms = lambda: int(time.time() * 1000)  # noqa: E731  UTC epoch ms
    t_end = None if duration_s is None else time.monotonic() + duration_s
    last_bd = None
    rounds = 0
    log.info("gateway %s (group %s): %d devices, round %d ms", agent.gateway_id, agent.group,
             len(agent.core.devices), agent.round_ms)
    while not stop["now"] and (t_end is None or time.monotonic() < t_end):
        now = clock_ms()
        wait = max(0, min(200, (agent.next_round_ms or now) - now))
        connected_before = agent.connected
        agent.tick(now, wait)
        if not connected_before and not agent.connected and wait:
            time.sleep(wait / 1000)
        if bd_file and agent.connected and agent.bd_seq != last_bd:
            Path(bd_file).write_text(f"{agent.bd_seq}\n")
            last_bd = agent.bd_seq
        if agent.metrics["rounds"] != rounds:
            rounds = agent.metrics["rounds"]
            agg = agent.core.aggregate()
            rows.append([now, agent.round_index - 1, agent.fail_safe, agent.vector_round_id,
                         agent.store.depth, agent.connected] + [w for row in agg.w for w in row])
    agent.shutdown(clock_ms())
    out = RunOutput(out_dir, "agent", {"gateway_id": agent.gateway_id, "group": agent.group,
                                       "broker": broker_url or cfg["broker"].get("url"),
                                       "duration_s": duration_s}, seed=cfg.get("gateway", {}).get("seed", 1))
    out.write_csv("reports.csv", report_columns(agent), rows)
    for name, value in sorted(agent.metrics.items()):
        out.figure(name, value, "count")
    out.figure("store_depth", agent.store.depth, "reports")
    out.figure("store_dropped", agent.store.dropped, "reports")
    out.figure("bd_seq", agent.bd_seq)
    out.finish()
    log.info("stopped: %s", json.dumps(agent.metrics, sort_keys=True))
    return 0

