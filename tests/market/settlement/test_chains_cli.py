"""`colorgrid ledger verify --peer/--main` and `ledger prove --main` on sidechain files."""
from __future__ import annotations

import json
import sqlite3

from colorgrid.cli import main

from .test_chains import world  # noqa: F401  (the fixture)


def test_verify_with_peer_and_main_and_cross_chain_prove(world, capsys):  # noqa: F811
    p = world["paths"]
    assert main(["ledger", "verify", str(p["a"]), "--peer", str(p["b"]), "--main", str(p["main"])]) == 0
    out = capsys.readouterr().out
    assert "exchange pairs OK between 2 chains" in out and "every recorded checkpoint matches" in out
    assert main(["ledger", "prove", str(p["a"]), str(world["export_seq"]), "--main", str(p["main"])]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["side"]["seq"] == world["export_seq"]
    assert main(["ledger", "prove", str(p["b"]), str(world["b"].head_seq + 5), "--main", str(p["main"])]) == 1
    assert "not covered by a checkpoint" in capsys.readouterr().err


def test_verify_names_a_mismatched_exchange_pair_and_a_forged_main_record(world, capsys):  # noqa: F811
    p = world["paths"]
    db = sqlite3.connect(p["b"])  # B's operator drops B's checkpoint (to rewrite what it covered) ...
    db.execute("DELETE FROM checkpoints")
    db.commit()
    db.close()
    b = world["b"].__class__(world["b"].store.__class__(p["b"], create=False), world["b"].operator)
    assert b.head_seq == world["import_seq"]
    world["a"].append("exchange", {"exchange_id": "x-9", "direction": "export", "counter_chain": "lem-b",
                                   "account": "lem:a", "qty_wh": 5, "price_uusd_per_kwh": 2, "amount_ntok": 10}, 1)
    head = world["a"].store.head()
    # ... and books the import of A's export x-9 at another price
    b.append("exchange", {"exchange_id": "x-9", "direction": "import", "counter_chain": "lem-a", "account": "lem:b",
                          "qty_wh": 5, "price_uusd_per_kwh": 3, "amount_ntok": 15, "counter_seq": head.seq,
                          "counter_hash": head.hash.hex()}, 1)
    assert main(["ledger", "verify", str(p["a"]), "--peer", str(p["b"]), "--main", str(p["main"])]) == 1
    err = capsys.readouterr().err
    assert "exchange 'x-9': lem-a entry" in err and "disagree on price_uusd_per_kwh, amount_ntok" in err
    assert "checkpoint 1 recorded at main entry" in err and "dropped" in err  # B's dropped checkpoint
    main_db = sqlite3.connect(p["main"])
    seq = world["main"].state.chains["lem-a"]["records"][0]
    body = main_db.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    main_db.execute("UPDATE entries SET body = ? WHERE seq = ?", (body.replace(b'"period\\":1', b'"period\\":7'), seq))
    main_db.commit()
    main_db.close()
    assert main(["ledger", "verify", str(p["a"]), "--main", str(p["main"])]) == 1
    err = capsys.readouterr().err
    assert f"ledger INVALID at entry {seq}" in err and "Traceback" not in err
    assert main(["ledger", "prove", str(p["a"]), "3", "--main", str(p["main"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chain checkpoint refused" in err[0]
    assert main(["ledger", "verify", str(p["a"]), "--main", str(p["a"].parent / "none.sqlite")]) == 2
    assert "argument --main" in capsys.readouterr().err
