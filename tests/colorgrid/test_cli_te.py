"""`colorgrid te run` and `colorgrid ledger verify`: files, columns, reproducibility, tamper exit."""
from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from colorgrid.cli import main

ORDER_COLS = ["interval", "order_id", "participant_id", "location", "side", "qty_wh", "price_uusd_per_kwh", "seq",
              "filled_wh"]
TRADE_COLS = ["interval", "trade_id", "buyer_id", "seller_id", "buy_order_id", "sell_order_id", "qty_wh",
              "delivered_wh", "buyer_price_uusd_per_kwh", "seller_price_uusd_per_kwh", "network_charge_ntok"]
BALANCE_COLS = ["account", "kind", "location", "has_pv", "balance_ntok", "bought_wh", "sold_wh", "delivered_wh",
                "exported_wh", "imported_wh"]


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def header(path):
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def te_run(out, *extra):
    return main(["te", "run", "--participants", "16", "--intervals", "12", "--seed", "3", "--out", str(out), *extra])


@pytest.mark.parametrize("mechanism", ["call", "mcafee", "cda"])
def test_te_run_writes_consistent_files(tmp_path, mechanism, capsys):
    out = tmp_path / mechanism
    assert te_run(out, "--mechanism", mechanism) == 0
    printed = capsys.readouterr().out
    assert "ledger OK" in printed
    assert header(out / "orders.csv") == ORDER_COLS
    assert header(out / "trades.csv") == TRADE_COLS
    assert header(out / "balances.csv") == BALANCE_COLS
    summary = json.loads((out / "summary.json").read_text())
    fig = summary["figures"]
    assert fig["ledger_ok"] is True and fig["conservation_gap_ntok"] == 0
    assert set(summary["files"]) >= {"orders.csv", "trades.csv", "intervals.csv", "balances.csv", "ledger.sqlite",
                                     "summary.json"}
    orders = {r["order_id"]: r for r in rows(out / "orders.csv")}
    trades = rows(out / "trades.csv")
    assert fig["orders"] == len(orders) and fig["trades"] == len(trades) and trades
    filled = {}
    for t in trades:  # every trade within both limits; fills add up to orders.csv
        for side, key in (("buy", "buy_order_id"), ("sell", "sell_order_id")):
            o = orders.get(t[key])
            if o is None:
                assert t[key].startswith("grid:")
                continue
            price = int(t["buyer_price_uusd_per_kwh" if side == "buy" else "seller_price_uusd_per_kwh"])
            assert (price <= int(o["price_uusd_per_kwh"])) if side == "buy" else (price >= int(o["price_uusd_per_kwh"]))
            filled[t[key]] = filled.get(t[key], 0) + int(t["qty_wh"])
        assert 0 <= int(t["delivered_wh"]) <= int(t["qty_wh"])
    for oid, o in orders.items():
        assert int(o["filled_wh"]) == filled.get(oid, 0) <= int(o["qty_wh"])
    balances = rows(out / "balances.csv")
    assert sum(int(b["balance_ntok"]) for b in balances) == fig["minted_ntok"] - fig["burned_ntok"]
    by_account = {b["account"]: int(b["balance_ntok"]) for b in balances}
    assert by_account["dso"] == fig["network_charges_ntok"] == sum(int(t["network_charge_ntok"]) for t in trades)
    assert by_account["operator"] == fig["operator_surplus_ntok"]
    if mechanism == "mcafee":
        assert fig["operator_surplus_ntok"] > 0  # trade reduction happened and its surplus was settled
    else:
        assert fig["operator_surplus_ntok"] == 0
    assert main(["ledger", "verify", str(out / "ledger.sqlite")]) == 0


def test_fixed_seed_reproduces_every_file_byte_for_byte(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert te_run(a, "--tie-break", "pro_rata") == 0
    assert te_run(b, "--tie-break", "pro_rata") == 0
    for name in ("orders.csv", "trades.csv", "intervals.csv", "balances.csv", "ledger.sqlite"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("wall"), sb.pop("wall")
    assert sa == sb
    assert te_run(b, "--seed", "4") == 0  # a different seed is a different day (and reruns overwrite)
    assert (a / "trades.csv").read_bytes() != (b / "trades.csv").read_bytes()


def test_ledger_verify_names_the_tampered_entry(tmp_path, capsys):
    out = tmp_path / "run"
    assert te_run(out) == 0
    db_path = out / "ledger.sqlite"
    db = sqlite3.connect(db_path)
    seq, body = db.execute("SELECT seq, body FROM entries WHERE kind='transfer' ORDER BY seq LIMIT 1").fetchone()
    forged = body.replace(b'"amount_ntok":', b'"amount_ntok":1')
    db.execute("UPDATE entries SET body=? WHERE seq=?", (forged, seq))
    db.commit()
    db.close()
    capsys.readouterr()
    assert main(["ledger", "verify", str(db_path), "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err
    assert f"entry {seq}" in err
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary["figures"]["bad_seq"] == seq and summary["figures"]["ledger_ok"] is False
    assert main(["ledger", "verify", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such ledger file" in capsys.readouterr().err


def test_bad_flags_are_named(tmp_path, capsys):
    assert main(["te", "run", "--participants", "0", "--out", str(tmp_path)]) == 2
    assert "participants" in capsys.readouterr().err
    assert main(["te", "run", "--k", "3/2", "--participants", "4", "--intervals", "2"]) == 2
    assert "k-rule" in capsys.readouterr().err


def test_te_run_with_postgres_ledger(tmp_path, capsys):
    import os

    from market.settlement.postgres_store import PostgresStore

    dsn = os.environ.get("COLORGRID_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    ns = f"te_cli_{os.getpid()}"
    try:
        assert main(["te", "run", "--participants", "6", "--intervals", "4", "--ledger-pg", dsn,
                     "--ledger-namespace", ns, "--out", str(tmp_path)]) == 0
        assert not (tmp_path / "ledger.sqlite").exists()
        capsys.readouterr()
        assert main(["ledger", "verify", dsn, "--namespace", ns]) == 0
        assert "ledger OK" in capsys.readouterr().out
    finally:
        PostgresStore(dsn, ns).drop()


def test_te_run_on_lem_dlmps(tmp_path):
    # hourly-style LEM prices for 2 intervals; the 8 P2P intervals map 0-3 -> 0 and 4-7 -> 1
    csv_path = tmp_path / "dlmp.csv"
    csv_path.write_text("bus,phase,interval,dlmp_usd_per_mwh,energy,loss,congestion,voltage\n"
                        "671,1,0,40.0,40,0,0,0\n671,2,0,42.0,40,2,0,0\n675,1,0,45.5,40,1.5,4,0\n"
                        "671,1,1,50.0,50,0,0,0\n671,2,1,52.0,50,2,0,0\n675,1,1,65.5,50,1.5,14,0\n")
    out = tmp_path / "run"
    assert main(["te", "run", "--participants", "10", "--intervals", "8", "--dlmp-csv", str(csv_path),
                 "--out", str(out)]) == 0
    locations = {r["participant_id"]: r["location"] for r in rows(out / "orders.csv")}
    assert set(locations.values()) <= {"671", "675"}
    dlmp_uusd_per_kwh = {("671", 0): 41_000, ("675", 0): 45_500, ("671", 1): 51_000, ("675", 1): 65_500}
    p2p = [t for t in rows(out / "trades.csv") if "grid" not in (t["buyer_id"], t["seller_id"])]
    assert p2p
    for t in p2p:  # charge = (DLMP buyer - DLMP seller) x delivered Wh, with the LEM interval t * 2 // 8
        lem_t = int(t["interval"]) * 2 // 8
        rate = dlmp_uusd_per_kwh[(locations[t["buyer_id"]], lem_t)] - dlmp_uusd_per_kwh[(locations[t["seller_id"]], lem_t)]
        assert int(t["network_charge_ntok"]) == rate * int(t["delivered_wh"])


def test_ledger_prove_gives_a_checkable_inclusion_proof(tmp_path, capsys):
    import hashlib

    from market.settlement import canonical, merkle
    from market.settlement.keys import is_valid

    out = tmp_path / "run"
    assert te_run(out) == 0
    db = sqlite3.connect(out / "ledger.sqlite")
    body = db.execute("SELECT body FROM entries WHERE seq=40").fetchone()[0]
    db.close()
    capsys.readouterr()
    assert main(["ledger", "prove", str(out / "ledger.sqlite"), "40", "--out", str(tmp_path / "p")]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof == json.loads((tmp_path / "p" / "proof.json").read_text())
    assert proof["verified"] is True and proof["entry_hash"] == hashlib.sha256(body).hexdigest()
    st = proof["statement"]
    assert merkle.verify_inclusion(bytes.fromhex(proof["entry_hash"]), proof["leaf_index"], st["tree_size"],
                                   [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(st["root"]))
    statement = canonical.encode(st)
    good = [s for s in proof["signatures"]
            if is_valid(proof["validators"][s["validator"]], bytes.fromhex(s["signature"]), statement)]
    assert len(good) >= proof["threshold_k"] == 2
    assert main(["ledger", "prove", str(out / "ledger.sqlite"), "10000000"]) == 1
    assert "not covered by a checkpoint" in capsys.readouterr().err


def test_te_run_with_a_periodic_burn(tmp_path, capsys):
    out = tmp_path / "run"
    assert te_run(out, "--periodic-burn-ppm", "20000", "--periodic-burn-every", "4") == 0
    fig = json.loads((out / "summary.json").read_text())["figures"]
    assert fig["periodic_burned_ntok"] > 0 and fig["conservation_gap_ntok"] == 0 and fig["ledger_ok"] is True
    db = sqlite3.connect(out / "ledger.sqlite")
    kinds = [r[0] for r in db.execute("SELECT kind FROM entries ORDER BY seq")]
    uncovered = db.execute("SELECT MAX(last_seq) FROM checkpoints").fetchone()[0] == len(kinds) - 1
    db.close()
    assert kinds.count("periodic_burn") == 12 // 4 and uncovered  # one per 4 of the 12 intervals, all checkpointed
    assert main(["ledger", "verify", str(out / "ledger.sqlite")]) == 0
    assert te_run(tmp_path / "bad", "--periodic-burn-ppm", "5") == 2
    assert "periodic burn" in capsys.readouterr().err


def test_te_run_communities_sidechains_exchanges_and_main_chain(tmp_path, capsys):
    out = tmp_path / "run"
    assert te_run(out, "--communities", "3", "--exchange-capacity-wh", "20000", "--periodic-burn-ppm", "10000",
                  "--periodic-burn-every", "6") == 0
    printed = capsys.readouterr().out
    assert "total time" in printed
    summary = json.loads((out / "summary.json").read_text())
    fig = summary["figures"]
    assert set(summary["files"]) >= {"community-0.sqlite", "community-1.sqlite", "community-2.sqlite", "main.sqlite",
                                     "exchanges.csv", "summary.json"}
    assert fig["all_ok"] is True and fig["problems"] == [] and summary["wall"]["wall_time_s"] > 0
    exchanges = rows(out / "exchanges.csv")
    assert fig["exchanges"] == len(exchanges) > 0 and fig["periodic_burned_ntok"] > 0
    for x in exchanges:  # delivered within traded, paid at the exchange's price, both halves booked
        assert 0 < int(x["delivered_wh"]) <= int(x["traded_wh"]) <= 20_000
        assert int(x["amount_ntok"]) == int(x["delivered_wh"]) * int(x["price_uusd_per_kwh"])
    assert fig["circulating_ntok"] == fig["minted_ntok"] - fig["burned_ntok"]
    paths = [str(out / f"community-{c}.sqlite") for c in range(3)]
    for path in paths + [str(out / "main.sqlite")]:
        assert main(["ledger", "verify", path]) == 0
    capsys.readouterr()
    assert main(["ledger", "verify", paths[0], "--peer", paths[1], "--peer", paths[2],
                 "--main", str(out / "main.sqlite")]) == 0
    printed = capsys.readouterr().out
    assert "exchange pairs OK between 3 chains" in printed and "supply conserved across 3 chains" in printed
    x = exchanges[0]  # a cross-chain proof of an exchange's export half
    exporter = out / f"{x['exporter']}.sqlite"
    assert main(["ledger", "prove", str(exporter), x["export_seq"], "--main", str(out / "main.sqlite")]) == 0
    # the import half of one exchange removed from the importer: the pair check names it
    db = sqlite3.connect(out / f"{x['importer']}.sqlite")
    db.execute("DELETE FROM checkpoints")
    db.execute("DELETE FROM entries WHERE seq >= ?", (int(x["import_seq"]),))
    db.commit()
    db.close()
    capsys.readouterr()
    importer = str(out / f"{x['importer']}.sqlite")
    assert main(["ledger", "verify", str(exporter), "--peer", importer]) == 1
    assert f"exchange '{x['exchange_id']}': export at" in capsys.readouterr().err
    assert te_run(tmp_path / "bad", "--communities", "2", "--ledger-pg", "postgresql://x/y") == 2
    assert "argument --communities" in capsys.readouterr().err
