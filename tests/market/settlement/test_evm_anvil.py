"""The Ethereum anchor on a real local node: anvil (npm @foundry-rs/anvil, `npm ci` in
tests/market/settlement/anvil, or `anvil` on PATH, or $ANVIL).  A missing anvil fails this test."""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from colorgrid.cli import main
from market.settlement.evm.anchor import EvmSettlementChain, check_anchors, mirror_ledger
from market.settlement.evm.backends import EvmError, JsonRpcBackend
from market.settlement.store import FakeLedgerStore

from .conftest import add_meter, new_ledger
from .test_chains import world  # noqa: F401  (the fixture)

LOCAL = Path(__file__).resolve().parent / "anvil" / "node_modules" / ".bin" / "anvil"


def anvil_binary() -> str:
    found = os.environ.get("ANVIL") or (str(LOCAL) if LOCAL.exists() else shutil.which("anvil"))
    assert found, "anvil not found: run `npm ci` in tests/market/settlement/anvil (or put anvil on PATH)"
    return found


@pytest.fixture(scope="module")
def rpc_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([anvil_binary(), "--port", str(port), "--silent"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                JsonRpcBackend(url, timeout_s=1).accounts()
                break
            except EvmError:
                assert proc.poll() is None, "anvil exited"
                assert time.monotonic() < deadline, "anvil did not answer within 30 s"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, 9)  # the npm wrapper and the node binary it started
        proc.wait(timeout=10)


def test_ledger_mirrors_onto_anvil(rpc_url):
    store = FakeLedgerStore()
    ledger, validators = new_ledger(store, credit_limit_ntok=0)
    r = add_meter(ledger, "p1", export_wh=2_000)
    ledger.mint_delivery("p1", r, 1_500, 40_000, 0)
    ledger.transfer("p1", "p2", 12_345, "pay", 0)
    ledger.checkpoint(1, validators)
    chain = EvmSettlementChain(JsonRpcBackend(rpc_url))
    report = mirror_ledger(store, chain)
    assert report.batches == 1 and report.anchors == 1
    assert chain.balance_ntok("p1") == 1_500 * 40_000 - 12_345 and chain.balance_ntok("p2") == 12_345
    assert check_anchors(store, chain) == []
    with pytest.raises(EvmError, match="already anchored"):
        chain.anchor(1, b"\x01" * 32, b"\x02" * 32)


def test_cli_anchors_a_te_run_ledger_and_catches_a_rewritten_checkpoint(rpc_url, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["te", "run", "--participants", "8", "--intervals", "8", "--out", str(out)]) == 0
    db_path = out / "ledger.sqlite"
    capsys.readouterr()
    assert main(["ledger", "anchor", str(db_path), "--rpc", rpc_url]) == 0
    printed = capsys.readouterr().out
    address = printed.split()[1].rstrip(":")
    assert "anchored 2 checkpoint(s)" in printed
    assert main(["ledger", "anchor", str(db_path), "--rpc", rpc_url, "--contract", address]) == 0
    assert "anchored 0 checkpoint(s)" in capsys.readouterr().out
    db = sqlite3.connect(db_path)
    statement = db.execute("SELECT statement FROM checkpoints WHERE period=2").fetchone()[0]
    db.execute("UPDATE checkpoints SET statement=? WHERE period=2", (statement.replace(b'"period":2', b'"period": 2'),))
    db.commit()
    db.close()
    assert main(["ledger", "anchor", str(db_path), "--rpc", rpc_url, "--contract", address, "--check-only"]) == 1
    assert "periods [2]" in capsys.readouterr().err


def test_cli_anchors_the_main_chain_on_anvil_and_checks_sidechains_through_it(rpc_url, world, capsys):  # noqa: F811
    p = world["paths"]
    capsys.readouterr()
    assert main(["ledger", "anchor", str(p["main"]), "--rpc", rpc_url]) == 0
    printed = capsys.readouterr().out
    address = printed.split()[1].rstrip(":")
    assert "anchored 1 checkpoint(s) now" in printed and "main chain: 2 sidechain(s) registered" in printed
    for side, n in (("a", 2), ("b", 1)):
        assert main(["ledger", "anchor", str(p[side]), "--main", str(p["main"]), "--rpc", rpc_url,
                     "--contract", address, "--check-only"]) == 0
        assert f"{n} of {n} checkpoint(s) anchored through the main chain" in capsys.readouterr().out
    db = sqlite3.connect(p["main"])  # the main chain's checkpoint rewritten after it was anchored
    statement = db.execute("SELECT statement FROM checkpoints WHERE period=1").fetchone()[0]
    db.execute("UPDATE checkpoints SET statement=? WHERE period=1", (statement.replace(b'"period":1', b'"period": 1'),))
    db.commit()
    db.close()
    assert main(["ledger", "anchor", str(p["a"]), "--main", str(p["main"]), "--rpc", rpc_url, "--contract", address,
                 "--check-only"]) == 1
    err = capsys.readouterr().err
    assert "periods [1]" in err and "in main checkpoint 1, which differs from the public anchor" in err
