"""A controller's registry and results folder, a P2P ledger, and a portal app over them."""
import csv

import pytest
from fastapi.testclient import TestClient

from cloud.registry import SqliteRegistry
from portal.api import create_app
from portal.dispatcher import FakeDispatcher, Signer
from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder
from portal.market import LedgerReader, MarketResults
from portal.store import FakePortalStore
from portal.tokens import FakeTokenStore

NOW = 1_700_000_000_000
KEY = bytes(range(32))
TIERS = ["green", "yellow", "black"]


class Clock:
    def __init__(self, ms=NOW):
        self.ms = ms

    def __call__(self):
        return self.ms


def write_registry(path):
    """Gateways in two groups and a few control vectors, written by the controller's own store."""
    reg = SqliteRegistry(path)
    for gid, group, online in (("gw-1", "671.1", True), ("gw-2", "671.1", True), ("gw-3", "671.2", True)):
        reg.record_birth(gid, group, 3, {"devices": 10, "k": 3, "tiers": TIERS, "capacity_w": 20_000,
                                         "params": {"round_ms": 2000}}, NOW - 60_000)
    reg.record_death("gw-2", 3, NOW - 10_000)
    for rid in (100, 101):
        for group in ("671.1", "671.2"):
            reg.log_command(rid, group, NOW - (102 - rid) * 2000, NOW - (102 - rid) * 2000 + 4000,
                            '{"group":"%s","issued_ts_ms":1,"key_id":"k1","p_off":[0.1,0,0],"p_on":[0,0,1],'
                            '"round_id":%d,"sig":"00","v":1}' % (group, rid))
    reg.close()


def write_rounds(path):
    cols = ["t_s", "round_id", "group", "goal_kw", "goal_source", "law_goal_kw", "ramped", "measured_enabled_kw",
            "saturated", "n_live", "n_fresh", "n_missing", "n_fail_safe", "enabled_t0_kw", "enabled_t1_kw",
            "enabled_t2_kw", "p_on_t0", "p_on_t1", "p_on_t2", "p_off_t0", "p_off_t1", "p_off_t2"]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for rid in (100, 101):
            w.writerow([rid * 2.0, rid, "671.1", 30.0, "schedule", 30.0, False, 31.5, False, 1, 1, 0, 0,
                        5.5, 10.0, 16.0, 0, 0, 1, 0.1, 0, 0])
            w.writerow([rid * 2.0, rid, "671.2", 12.0, "schedule", 12.0, False, 12.5, False, 1, 0, 1, 1,
                        1.0, 4.0, 7.5, 0, 0, 1, 0.2, 0, 0])


def write_market(folder):
    """A small P2P run: trades.csv, intervals.csv and a checkpointed ledger (market.settlement API)."""
    from market.settlement.keys import KeyPair
    from market.settlement.ledger import Ledger, WitnessValidator, sign_reading
    from market.settlement.sqlite_store import SQLiteStore

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trades.csv").write_text("interval,trade_id,buyer_id,seller_id,qty_wh\n0,t0,p2,p1,500\n1,t1,p2,p1,250\n")
    (folder / "intervals.csv").write_text("interval,start_ts_ms,clearing_price_uusd_per_kwh\n0,0,40000\n1,900000,\n")
    operator, validators = KeyPair.derive(1, "operator"), [KeyPair.derive(1, f"v{i}") for i in range(3)]
    store = SQLiteStore(folder / "ledger.sqlite")
    ledger = Ledger.create(store, operator, [(v.key_id, v.public_hex) for v in validators], 2, "portal-test")
    meter = KeyPair.derive(1, "meter:p1")
    with ledger.batch():
        ledger.register_key(meter.key_id, "meter", meter.public_hex, "p1", 0)
        reading = {"meter_id": meter.key_id, "participant_id": "p1", "interval": 0,
                   "export_wh": 1000, "import_wh": 0, "ts_ms": 0}
        seq = ledger.record_meter_reading(reading, sign_reading(reading, meter))
        ledger.mint_delivery("p1", seq, 1000, 40_000, 0)
    ledger.checkpoint(1, [WitnessValidator(v) for v in validators])
    store.close()


@pytest.fixture
def world(tmp_path):
    write_registry(tmp_path / "registry.db")
    results = tmp_path / "results"
    (results / "ctl").mkdir(parents=True)
    write_rounds(results / "ctl" / "rounds.csv")
    write_market(results / "te")
    return tmp_path


class Portal:
    def __init__(self, world, signer=True, dispatcher=None):
        self.clock = Clock()
        self.tokens = FakeTokenStore()
        self.store = FakePortalStore()
        self.dispatcher = dispatcher or FakeDispatcher()
        folder = ResultsFolder(world / "results")
        self.ledger = LedgerReader(folder)
        self.app = create_app(self.tokens, self.store, FleetView(ReadOnlyRegistry(world / "registry.db"), folder),
                              MarketResults(folder), self.ledger, Signer("portal", KEY) if signer else None,
                              self.dispatcher, clock=self.clock, max_body_bytes=256 * 1024)
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def token(self, stakeholder, scopes, groups=(), ttl_s=3600):
        return self.tokens.create(stakeholder, scopes, ttl_s, groups, at_ms=self.clock())

    def call(self, method, url, token=None, **kw):
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, url, headers=headers, **kw)


@pytest.fixture
def portal(world):
    p = Portal(world)
    yield p
    p.ledger.close()
