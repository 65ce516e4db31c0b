"""Sidechains (one ledger per local market) and a main chain that records their checkpoints.

Every local market — a LEM or a P2P community — keeps its own `Ledger` with its own operator,
validators and k-of-n checkpoints.  The main chain is the same ledger code with its own validator
set; its entries are

    register_chain    a sidechain's ledger_id, operator key, validators and threshold_k
    chain_checkpoint  one signed checkpoint statement of a sidechain, with its validators' signatures

recorded in order (the main chain's rules check period order, contiguous seq ranges, the
prev_checkpoint link and >= k valid signatures of the registered validators before accepting one).

Cross-chain inclusion proof of entry e of sidechain A (`prove_cross`, `verify_cross_proof`):

    e --RFC 6962 path--> root of A's checkpoint statement S (k_A-of-n_A signed by A's validators)
      S == statement of main-chain entry m (kind chain_checkpoint, ledger_id A)
    m --RFC 6962 path--> main-chain checkpoint (k_M-of-n_M signed by the main validators)
    A's validators: from main-chain entry r (register_chain A), proven the same way

so a holder of the main chain's validator keys checks it offline.  `check_against_main` compares a
sidechain's stored checkpoints with the main chain's records (a rewritten sidechain, even re-signed,
no longer matches what the main chain holds).

Exchanges between sidechains (`settle_exchange`, `check_exchange_pairs`): the exporting market's
chain books `exchange` direction=export (its account credited, the clearing account
"chain:<importer>" debited) and the importing chain books direction=import referencing the export
entry's seq and hash (account debited, "chain:<exporter>" credited).  The pair check names every
exchange whose two sides are missing, duplicated or disagree (quantity, price, amount, chains, hash).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from market.settlement import canonical
from market.settlement.errors import LedgerError
from market.settlement.ledger import InclusionProof, Ledger, verify_proof
from market.settlement.ledger_state import CLEARING_PREFIX
from market.settlement.store import LedgerStore


def _entry(store: LedgerStore, seq: int):
    for row in store.entries(seq, seq):
        return row
    raise LedgerError(f"entry {seq} is not in the ledger")


def registration_payload(side: Ledger) -> dict:
    st = side.state
    return {"ledger_id": st.ledger_id, "operator_public_hex": st.registry.public_hex(st.operator_id, "operator"),
            "validators": [[vid, pub] for vid, pub in sorted(st.validators.items())], "threshold_k": st.threshold_k}


def register_sidechain(main: Ledger, side: Ledger, ts_ms: int) -> int:
    """Register `side` (its genesis operator key, validators and k) on the main chain."""
    return main.append("register_chain", registration_payload(side), ts_ms)


def record_checkpoints(main: Ledger, side_store: LedgerStore | Ledger, ts_ms: int) -> list[int]:
    """Record on the main chain, in order, every checkpoint of the sidechain not recorded yet.
    `side_store` may be the sidechain's open `Ledger` (no replay of its store then)."""
    side = side_store if isinstance(side_store, Ledger) else Ledger(side_store)
    side_store = side.store
    chain = main.state.chains.get(side.state.ledger_id)
    if chain is None:
        raise LedgerError(f"chain {side.state.ledger_id!r} is not registered on the main chain")
    fresh = side_store.checkpoints()[len(chain["records"]):]
    return main.append_many(("chain_checkpoint", {"ledger_id": side.state.ledger_id,
                                                  "statement": cp.statement.decode("ascii"),
                                                  "signatures": canonical.decode(cp.signatures)}, ts_ms)
                            for cp in fresh)


@dataclass
class CrossChainProof:
    side: InclusionProof            # entry -> sidechain checkpoint statement
    main_body: bytes                # the main-chain entry recording that statement
    main: InclusionProof            # main entry -> main checkpoint statement
    registration_body: bytes        # the main-chain entry registering the sidechain
    registration: InclusionProof

    def to_json(self) -> dict:
        def one(p: InclusionProof) -> dict:
            return {"seq": p.seq, "entry_hash": p.entry_hash.hex(), "leaf_index": p.index, "tree_size": p.tree_size,
                    "audit_path": [h.hex() for h in p.path], "statement": p.statement.decode("ascii"),
                    "signatures": [list(s) for s in p.signatures]}

        return {"side": one(self.side), "main_entry": self.main_body.decode("ascii"), "main": one(self.main),
                "registration_entry": self.registration_body.decode("ascii"), "registration": one(self.registration)}

    @classmethod
    def from_json(cls, doc: dict) -> "CrossChainProof":
        def one(d: dict) -> InclusionProof:
            return InclusionProof(d["seq"], bytes.fromhex(d["entry_hash"]), d["leaf_index"], d["tree_size"],
                                  [bytes.fromhex(h) for h in d["audit_path"]], d["statement"].encode("ascii"),
                                  [tuple(s) for s in d["signatures"]])

        return cls(one(doc["side"]), doc["main_entry"].encode("ascii"), one(doc["main"]),
                   doc["registration_entry"].encode("ascii"), one(doc["registration"]))


def prove_cross(side: Ledger, main: Ledger, seq: int) -> CrossChainProof:
    """Entry `seq` of `side` -> its checkpoint -> the main-chain record of it -> a main checkpoint."""
    side_proof = side.prove(seq)
    ledger_id = side.state.ledger_id
    chain = main.state.chains.get(ledger_id)
    if chain is None:
        raise LedgerError(f"prove: chain {ledger_id!r} is not registered on the main chain")
    record = None
    for main_seq in chain["records"]:
        row = _entry(main.store, main_seq)
        if canonical.decode(row.body)["payload"]["statement"].encode("ascii") == side_proof.statement:
            record = row
            break
    if record is None:
        period = canonical.decode(side_proof.statement)["period"]
        raise LedgerError(f"prove: checkpoint {period} of chain {ledger_id!r} is not recorded on the main chain")
    registration = None
    for row in main.store.entries():
        if row.kind == "register_chain" and canonical.decode(row.body)["payload"]["ledger_id"] == ledger_id:
            registration = row
            break
    assert registration is not None  # the chain is registered, so its entry exists
    return CrossChainProof(side_proof, record.body, main.prove(record.seq), registration.body,
                           main.prove(registration.seq))


def verify_cross_proof(proof: CrossChainProof, main_validators: dict[str, str], main_threshold_k: int) -> str:
    """'' when the proof holds offline given the main chain's validator keys, else the first reason."""
    for name, body, inclusion in (("registration", proof.registration_body, proof.registration),
                                  ("main-chain record", proof.main_body, proof.main)):
        if hashlib.sha256(body).digest() != inclusion.entry_hash:
            return f"{name} entry does not match its hash"
        if not verify_proof(inclusion, main_validators, main_threshold_k):
            return f"{name} entry is not in a main-chain checkpoint signed by {main_threshold_k} main validators"
    try:
        reg = canonical.decode(proof.registration_body)
        rec = canonical.decode(proof.main_body)
    except ValueError:
        return "main-chain entries are not canonical JSON"
    if reg.get("kind") != "register_chain" or rec.get("kind") != "chain_checkpoint":
        return "main-chain entries are not a chain registration and a chain checkpoint"
    if reg["payload"].get("ledger_id") != rec["payload"].get("ledger_id"):
        return "registration and record are of different chains"
    if rec["payload"].get("statement", "").encode("ascii") != proof.side.statement:
        return "the sidechain checkpoint differs from the main-chain record of it"
    side_validators = {vid: pub for vid, pub in reg["payload"]["validators"]}
    if not verify_proof(proof.side, side_validators, reg["payload"]["threshold_k"]):
        return "entry is not in the sidechain checkpoint (audit path or sidechain validator signatures)"
    return ""


def check_against_main(side_store: LedgerStore, main_store: LedgerStore) -> tuple[list[str], int]:
    """Problems between a sidechain and the main chain's records of it, and how many of the
    sidechain's checkpoints are not recorded yet (not an error: the next record round takes them)."""
    side, main = Ledger(side_store), Ledger(main_store)
    ledger_id = side.state.ledger_id
    chain = main.state.chains.get(ledger_id)
    if chain is None:
        return [f"chain {ledger_id!r} is not registered on the main chain"], 0
    problems = []
    expected = registration_payload(side)
    if (chain["operator_public_hex"], chain["validators"], chain["threshold_k"]) != (
            expected["operator_public_hex"], dict(expected["validators"]), expected["threshold_k"]):
        problems.append(f"chain {ledger_id!r}: genesis keys or threshold differ from its main-chain registration")
    cps = side_store.checkpoints()
    for i, main_seq in enumerate(chain["records"]):
        statement = canonical.decode(_entry(main_store, main_seq).body)["payload"]["statement"].encode("ascii")
        period = canonical.decode(statement)["period"]
        if i >= len(cps):
            problems.append(f"chain {ledger_id!r}: checkpoint {period} recorded at main entry {main_seq} "
                            "is missing from the sidechain (dropped)")
        elif cps[i].statement != statement:
            problems.append(f"chain {ledger_id!r}: checkpoint {cps[i].period} differs from its main-chain "
                            f"record at main entry {main_seq} (sidechain rewritten or record forged)")
    return problems, max(0, len(cps) - len(chain["records"]))


def settle_exchange(exporter: Ledger, importer: Ledger, exchange_id: str, export_account: str,
                    import_account: str, qty_wh: int, price_uusd_per_kwh: int, ts_ms: int) -> tuple[int, int]:
    """Book one LEM-to-LEM exchange on both sidechains: the export first (committed), then the import
    referencing it.  A crash between the two leaves an export without its import, which the pair
    check names until `settle_exchange_import` completes it."""
    amount = qty_wh * price_uusd_per_kwh
    export_seq = exporter.append("exchange", {
        "exchange_id": exchange_id, "direction": "export", "counter_chain": importer.state.ledger_id,
        "account": export_account, "qty_wh": qty_wh, "price_uusd_per_kwh": price_uusd_per_kwh,
        "amount_ntok": amount}, ts_ms)
    return export_seq, settle_exchange_import(exporter.store, importer, exchange_id, import_account, ts_ms,
                                              export_seq)


def settle_exchange_import(exporter_store: LedgerStore, importer: Ledger, exchange_id: str, import_account: str,
                           ts_ms: int, export_seq: int | None = None) -> int:
    """Book the import side of an exchange whose export is on `exporter_store` (also a crash recovery).
    `export_seq`, when known, reads that one entry instead of scanning the exporting chain."""
    rows = exporter_store.entries(export_seq, export_seq) if export_seq is not None else exporter_store.entries()
    for row in rows:
        if row.kind != "exchange":
            continue
        payload = canonical.decode(row.body)["payload"]
        if payload["exchange_id"] == exchange_id and payload["direction"] == "export":
            if payload["counter_chain"] != importer.state.ledger_id:
                raise LedgerError(f"exchange {exchange_id!r}: exported to {payload['counter_chain']!r}, "
                                  f"not to {importer.state.ledger_id!r}")
            return importer.append("exchange", {
                "exchange_id": exchange_id, "direction": "import",
                "counter_chain": canonical.decode(_entry(exporter_store, 0).body)["payload"]["ledger_id"],
                "account": import_account, "qty_wh": payload["qty_wh"],
                "price_uusd_per_kwh": payload["price_uusd_per_kwh"], "amount_ntok": payload["amount_ntok"],
                "counter_seq": row.seq, "counter_hash": row.hash.hex()}, ts_ms)
    raise LedgerError(f"exchange {exchange_id!r}: no export on the exporting chain"
                      + (f" at entry {export_seq}" if export_seq is not None else ""))


def _exchanges(store: LedgerStore) -> tuple[str, list[tuple[int, bytes, dict]]]:
    ledger_id, found = "", []
    for row in store.entries():
        if row.seq == 0:
            ledger_id = canonical.decode(row.body)["payload"]["ledger_id"]
        elif row.kind == "exchange":
            found.append((row.seq, row.hash, canonical.decode(row.body)["payload"]))
    return ledger_id, found


def check_exchange_pairs(stores: list[LedgerStore]) -> list[str]:
    """Every exchange between the given sidechains must appear once as an export on one and once
    as the matching import on the other; returns the problems, each naming the exchange."""
    sides: dict[str, dict] = {}
    chains = set()
    for store in stores:
        ledger_id, found = _exchanges(store)
        chains.add(ledger_id)
        for seq, digest, p in found:
            sides.setdefault(p["exchange_id"], {}).setdefault(p["direction"], []).append((ledger_id, seq, digest, p))
    problems = []
    for xid in sorted(sides):
        ex, im = sides[xid].get("export", []), sides[xid].get("import", [])
        where = lambda rows: ", ".join(f"{c} entry {s}" for c, s, _, _ in rows)  # noqa: E731
        if len(ex) > 1 or len(im) > 1:
            problems.append(f"exchange {xid!r}: settled more than once ({where(ex + im)}; replayed)")
            continue
        if not im:
            if ex[0][3]["counter_chain"] in chains:
                problems.append(f"exchange {xid!r}: export at {where(ex)} has no import on {ex[0][3]['counter_chain']!r}")
            continue
        if not ex:
            if im[0][3]["counter_chain"] in chains:
                problems.append(f"exchange {xid!r}: import at {where(im)} has no export on {im[0][3]['counter_chain']!r}")
            continue
        (ec, es, eh, ep), (ic, iseq, _, ip) = ex[0], im[0]
        if ep["counter_chain"] != ic or ip["counter_chain"] != ec:
            problems.append(f"exchange {xid!r}: chains do not reference each other ({ec} -> {ep['counter_chain']}, "
                            f"{ic} -> {ip['counter_chain']})")
        elif ip.get("counter_seq") != es or ip.get("counter_hash") != eh.hex():
            problems.append(f"exchange {xid!r}: import at {ic} entry {iseq} references {ec} entry "
                            f"{ip.get('counter_seq')} with another hash than export entry {es}")
        else:
            diff = [k for k in ("qty_wh", "price_uusd_per_kwh", "amount_ntok") if ep[k] != ip[k]]
            if diff:
                problems.append(f"exchange {xid!r}: {ec} entry {es} and {ic} entry {iseq} disagree on {', '.join(diff)}")
    return problems


def supply(store: LedgerStore) -> dict:
    """Token totals of one chain recomputed from its entries (not from the replayed state):
    minted (delivery), burned (policy burns + periodic burns), transferred, exported / imported
    per counter chain, and the balances the entries add up to (clearing accounts "chain:*" apart)."""
    row = {"ledger_id": "", "minted_ntok": 0, "burned_ntok": 0, "periodic_burned_ntok": 0, "transferred_ntok": 0,
           "exported_ntok": {}, "imported_ntok": {}, "balances_ntok": {}}
    bal = row["balances_ntok"]

    def add(account: str, amount: int) -> None:
        bal[account] = bal.get(account, 0) + amount

    for entry in store.entries():
        kind = entry.kind
        if kind not in ("genesis", "mint", "burn", "transfer", "periodic_burn", "exchange"):
            continue
        p = canonical.decode(entry.body)["payload"]
        if kind == "genesis":
            row["ledger_id"] = p["ledger_id"]
        elif kind == "mint":
            row["minted_ntok"] += p["amount_ntok"]
            add(p["account"], p["amount_ntok"])
        elif kind == "burn":
            row["burned_ntok"] += p["amount_ntok"]
            add(p["account"], -p["amount_ntok"])
        elif kind == "periodic_burn":
            for account, amount in p["burns"]:
                row["burned_ntok"] += amount
                row["periodic_burned_ntok"] += amount
                add(account, -amount)
        elif kind == "transfer":
            row["transferred_ntok"] += p["amount_ntok"]
            add(p["from"], -p["amount_ntok"])
            add(p["to"], p["amount_ntok"])
        else:
            key = "exported_ntok" if p["direction"] == "export" else "imported_ntok"
            row[key][p["counter_chain"]] = row[key].get(p["counter_chain"], 0) + p["amount_ntok"]
            sign = 1 if p["direction"] == "export" else -1
            add(p["account"], sign * p["amount_ntok"])
            add(CLEARING_PREFIX + p["counter_chain"], -sign * p["amount_ntok"])
    row["circulating_ntok"] = sum(v for a, v in bal.items() if not a.startswith(CLEARING_PREFIX))
    return row


def check_conservation(stores: list[LedgerStore]) -> tuple[list[dict], list[str]]:
    """Supply rule across sidechains: on each chain sum(balances) == minted - burned (the replayed
    ledger state agreeing with the totals of the entries), and between every two chains the clearing
    accounts net to zero (A's "chain:B" == -B's "chain:A": every export met its import), so the tokens
    circulating on all chains together == all minted - all burned.  Returns (rows per chain, problems)."""
    rows, problems = [], []
    for store in stores:
        row = supply(store)
        state = Ledger(store).state
        nonzero = lambda balances: {a: v for a, v in balances.items() if v}  # noqa: E731
        if nonzero(state.balances) != nonzero(row["balances_ntok"]):
            problems.append(f"chain {row['ledger_id']!r}: balances replayed by the ledger differ from its entries' totals")
        gap = sum(row["balances_ntok"].values()) - (row["minted_ntok"] - row["burned_ntok"])
        if gap:
            problems.append(f"chain {row['ledger_id']!r}: sum of balances - (minted - burned) = {gap} ntok")
        rows.append(row)
    by_id = {r["ledger_id"]: r for r in rows}
    for a in sorted(by_id):
        for b in sorted(by_id):
            if a < b:
                ab = by_id[a]["balances_ntok"].get(CLEARING_PREFIX + b, 0)
                ba = by_id[b]["balances_ntok"].get(CLEARING_PREFIX + a, 0)
                if ab + ba:
                    problems.append(f"chains {a!r} and {b!r}: clearing accounts do not net to zero ({a} holds {ab} "
                                    f"ntok for {b}, {b} holds {ba} for {a}; an exchange is half-settled)")
    return rows, problems


def half_settled(stores: list[LedgerStore]) -> list[tuple[str, str, str, int]]:
    """Exports among `stores` whose importing chain (also among them) has no import yet:
    (exchange_id, exporter ledger_id, importer ledger_id, export seq) — what `settle_exchange_import`
    completes after a crash between the two halves."""
    found, imports, chains = [], set(), set()
    for store in stores:
        ledger_id, rows = _exchanges(store)
        chains.add(ledger_id)
        for seq, _, p in rows:
            if p["direction"] == "import":
                imports.add((p["exchange_id"], ledger_id))
            else:
                found.append((p["exchange_id"], ledger_id, p["counter_chain"], seq))
    return [x for x in found if x[2] in chains and (x[0], x[2]) not in imports]


def main_validators(main: Ledger) -> tuple[dict[str, str], int]:
    return dict(main.state.validators), main.state.threshold_k


__all__ = ["CrossChainProof", "check_against_main", "check_conservation", "check_exchange_pairs", "half_settled",
           "main_validators", "prove_cross", "record_checkpoints", "register_sidechain", "registration_payload",
           "settle_exchange", "settle_exchange_import", "supply", "verify_cross_proof"]
