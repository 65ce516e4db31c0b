"""`colorgrid agent --config gateway.toml`: the gateway agent as a CPython service (Raspberry Pi).

CPython-only (tomllib, logging, signal, paho). The config file (see docs/deploy-raspberry-pi.md
and deploy/gateway.example.toml):

    [gateway]   id, group, seed (1), bd_seq_file (optional: persist the birth/death counter)
    [broker]    url ("mqtt://host:port" or "mqtts://..."), username, password | password_file,
                keepalive_s (10), ca_certs (TLS)
    [security]  keys = {key_id = "hex"} | key_file (hex text -> key id "k1", or JSON
                {key_id: hex}); vector_max_ttl_ms (60000); optional, the gateway's own key that
                signs its reports (cloud.enrollment): report_key = {key_id = "hex"} |
                report_key_file (hex text -> key id = the gateway id, or JSON {key_id: hex})
    [agent]     store_capacity (256), backoff_base_ms (500), backoff_cap_ms (30000)
    [params]    edge_agent.params.AgentParams fields (k, tier_names, round_s, t_ef_s, ...)
    [[devices]] id, kind ("constant" | "thermostatic"), rated_w, tier_shares, and for
                thermostatic the ThermostaticDevice options (setpoint_c, deadband_c, ...)

A bad config exits with code 2 and one message naming the field (``ConfigError``).
"""
from __future__ import annotations

import json
import logging
import signal
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent import keyfile, topics, urls
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


def _read_secret(base: Path, name: str, field: str) -> str:
    try:
        return (base / name).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {name}: {exc.strerror}") from None


def read_keys(sec: dict, base: Path) -> dict[str, bytes]:
    """[security] keys = {key_id = "hex"}, or key_file (hex text for key id "k1", or JSON)."""
    try:
        if "keys" in sec:
            return keyfile.parse_key_table(sec["keys"], "security.keys")
        if "key_file" in sec:
            return keyfile.read_keys(base / sec["key_file"], "k1", "security.key_file")
    except keyfile.KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    raise ConfigError("security.keys: missing (or security.key_file)")


def read_report_key(sec: dict, base: Path, gateway_id: str) -> tuple[str | None, bytes | None]:
    """[security] report_key = {key_id = "hex"} or report_key_file → (key_id, key), or (None, None)."""
    try:
        if "report_key" in sec:
            table = keyfile.parse_key_table(sec["report_key"], "security.report_key")
            if len(table) != 1:
                raise ConfigError("security.report_key: expected one key {key_id = \"hex\"}")
            return next(iter(table.items()))
        if "report_key_file" in sec:
            return keyfile.read_key(base / sec["report_key_file"], gateway_id, "security.report_key_file")
    except keyfile.KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    return None, None


def broker_address(url, field: str) -> urls.BrokerUrl:
    try:
        return urls.parse_broker_url(url, field)
    except urls.UrlError as exc:
        raise ConfigError(str(exc)) from None


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
    if broker_url:
        host, port, tls = broker_address(broker_url, "--broker")
    else:
        host, port, tls = broker_address(_get(brk, "url", "broker", str, required=True), "broker.url")
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
    report_key_id, report_key = read_report_key(sec, cfg["_base"], gateway_id)
    return GatewayAgent(
        core, transport, gateway_id, group, read_keys(sec, cfg["_base"]),
        Prng(_get(gw, "seed", "gateway", int, 1) ^ 0x5EED),
        store_capacity=_get(agt, "store_capacity", "agent", int, 256),
        backoff_base_ms=_get(agt, "backoff_base_ms", "agent", int, 500),
        backoff_cap_ms=_get(agt, "backoff_cap_ms", "agent", int, 30000),
        vector_max_ttl_ms=_get(sec, "vector_max_ttl_ms", "security", int, 60000),
        bd_seq=bd_seq, log=lambda level, msg: log.log(getattr(logging, level.upper()), msg),
        report_key=report_key, report_key_id=report_key_id)


def report_columns(agent: GatewayAgent) -> list[str]:
    cols = ["ts_ms", "round", "fail_safe", "vector_round_id", "store_depth", "connected"]
    for name in agent.core.params.tier_names:
        cols += [f"{name}_{s}_w" for s in STATE_NAMES]
    return cols


@dataclass
class AgentRun:
    """What a finished run leaves to be written (`colorgrid agent --out DIR`, docs/cli.md): the
    per-round rows of reports.csv and the end-of-run figures. Writing the files is the command's
    job (colorgrid.commands.agent): no package imports the colorgrid command (ARCHITECTURE §8)."""

    params: dict                      # gateway_id, group, broker, duration_s
    seed: int
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    figures: list[tuple[str, object, str]] = field(default_factory=list)   # (name, value, unit)


def _figures(agent: GatewayAgent) -> list[tuple[str, object, str]]:
    figures = [(name, value, "count") for name, value in sorted(agent.metrics.items())]
    return figures + [("store_depth", agent.store.depth, "reports"),
                      ("store_dropped", agent.store.dropped, "reports"), ("bd_seq", agent.bd_seq, "")]


def _loop(agent: GatewayAgent, bd_file, duration_s: float | None, stop: dict) -> list[list]:
    """Tick the agent until `stop` or the duration; one report row per round (UTC epoch ms)."""
    rows: list[list] = []
    t_end = None if duration_s is None else time.monotonic() + duration_s
    last_bd, rounds = None, 0
    while not stop["now"] and (t_end is None or time.monotonic() < t_end):
        now = int(time.time() * 1000)
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
    return rows


def run(cfg: dict, broker_url: str | None, duration_s: float | None) -> AgentRun:
    """Run the configured agent until SIGTERM/SIGINT or `duration_s`, then shut down cleanly
    (retained death); returns what `--out` writes."""
    agent = build_agent(cfg, broker_url)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    log.info("gateway %s (group %s): %d devices, round %d ms", agent.gateway_id, agent.group,
             len(agent.core.devices), agent.round_ms)
    rows = _loop(agent, cfg.get("gateway", {}).get("bd_seq_file"), duration_s, stop)
    agent.shutdown(int(time.time() * 1000))
    log.info("stopped: %s", json.dumps(agent.metrics, sort_keys=True))
    params = {"gateway_id": agent.gateway_id, "group": agent.group,
              "broker": broker_url or cfg["broker"].get("url"), "duration_s": duration_s}
    return AgentRun(params, cfg.get("gateway", {}).get("seed", 1), report_columns(agent), rows,
                    _figures(agent))
