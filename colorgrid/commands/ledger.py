"""`colorgrid ledger verify|prove|anchor`: a P2P settlement ledger (SQLite or PostgreSQL)."""
from __future__ import annotations

import os
import sys

HELP = ("settlement ledger (P2P, LEM sidechains, main chain): verify it (chain, signatures, rules, k-of-n "
        "checkpoints, tokens, exchange pairs, main-chain records) or prove an entry")


def operator_key(text: str) -> str:
    """An Ed25519 public key as 64 hex digits (lower-cased)."""
    import argparse

    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"expected an Ed25519 public key as 64 hex digits, got {text!r}")
    return value


def add_arguments(parser) -> None:
    from colorgrid.args import count, non_negative_int
    from colorgrid.results import add_out_argument

    sub = parser.add_subparsers(dest="action", required=True, metavar="verify|prove|anchor")
    verify = sub.add_parser("verify", help="verify every entry and checkpoint; exit 1 naming the first bad one")
    verify.add_argument("path", metavar="PATH", help="ledger database (e.g. OUT/ledger.sqlite from `te run`), "
                        "or a PostgreSQL DSN postgresql://… (with --namespace)")
    verify.add_argument("--namespace", default="te_ledger", help="PostgreSQL table prefix (default te_ledger)")
    verify.add_argument("--peer", metavar="PATH", action="append", default=[],
                        help="another sidechain (SQLite file), verified too; LEM-to-LEM exchanges between the "
                        "chains are checked pair by pair (repeatable)")
    verify.add_argument("--main", metavar="MAIN", default=None,
                        help="main chain (SQLite file): verified too, and every sidechain's checkpoints compared "
                        "with the main chain's records of them")
    verify.add_argument("--trusted-operator-key", metavar="HEX", type=operator_key, default=None,
                        help="expected operator public key (64 hex); without it the genesis key is trusted")
    verify.add_argument("--workers", type=count, default=min(4, os.cpu_count() or 1),
                        help="processes for signature checks (default: cores, at most 4)")
    add_out_argument(verify)
    prove = sub.add_parser("prove", help="inclusion proof of one entry in its co-signed checkpoint (JSON)")
    prove.add_argument("path", metavar="PATH", help="ledger database or postgresql:// DSN")
    prove.add_argument("seq", type=non_negative_int, help="entry sequence number")
    prove.add_argument("--namespace", default="te_ledger", help="PostgreSQL table prefix (default te_ledger)")
    prove.add_argument("--main", metavar="MAIN", default=None,
                       help="main chain (SQLite file): a cross-chain proof, entry -> sidechain checkpoint -> "
                       "main-chain record -> main-chain checkpoint")
    add_out_argument(prove)
    anchor = sub.add_parser("anchor", help="anchor checkpoint roots in the Ethereum contract (extra [evm]); check them")
    anchor.add_argument("path", metavar="PATH", help="ledger database or postgresql:// DSN")
    anchor.add_argument("--rpc", metavar="URL", default=None,
                        help="JSON-RPC of a lab node, e.g. http://127.0.0.1:8545 (anvil); default: in-process py-evm")
    anchor.add_argument("--contract", metavar="ADDRESS", default=None,
                        help="an existing deployment (otherwise the contract is deployed and its address printed)")
    anchor.add_argument("--check-only", action="store_true", help="anchor nothing, only compare")
    anchor.add_argument("--main", metavar="MAIN", default=None,
                        help="main chain (SQLite file) of the sidechain PATH: the main chain's checkpoints are "
                        "anchored, and PATH's checkpoints checked through them (record -> main checkpoint -> anchor)")
    anchor.add_argument("--namespace", default="te_ledger", help="PostgreSQL table prefix (default te_ledger)")
    add_out_argument(anchor)


def _open(args):
    from market.settlement.sqlite_store import SQLiteStore

    if str(args.path).startswith(("postgresql://", "postgres://")):
        from market.settlement.postgres_store import PostgresStore

        return PostgresStore(args.path, args.namespace, create=False)
    return SQLiteStore(args.path, create=False)


def run(args) -> int:
    import sqlite3

    from colorgrid.args import error
    from market.settlement.errors import SettlementError
    from market.settlement.sqlite_store import SQLiteStore

    prog = f"colorgrid ledger {args.action}"
    try:
        store = _open(args)
    except SettlementError as exc:
        return error(prog, f"argument PATH: {exc}")
    extra = {}
    try:
        for flag, paths in (("--main", [getattr(args, "main", None)]), ("--peer", getattr(args, "peer", []))):
            for path in paths:
                if path is not None:
                    extra.setdefault(flag, []).append(SQLiteStore(path, create=False))
    except SettlementError as exc:
        for stores in extra.values():
            for other in stores:
                other.close()
        store.close()
        return error(prog, f"argument {flag}: {exc}")
    args.main_store = (extra.get("--main") or [None])[0]
    args.peer_stores = extra.get("--peer", [])
    try:
        return {"verify": _verify, "prove": _prove, "anchor": _anchor}[args.action](args, store)
    except sqlite3.DatabaseError as exc:  # a damaged file read outside verify (which reports how far it got)
        print(f"{prog}: ledger file corrupt: {args.path}: {exc} (run `colorgrid ledger verify {args.path}` "
              f"for the last verifiable entry)", file=sys.stderr)
        return 1
    except SettlementError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
        for stores in extra.values():
            for other in stores:
                other.close()


def _prove(args, store) -> int:
    """Print the proof as JSON (and write proof.json under --out); exit 1 if it does not verify."""
    import json

    from colorgrid.results import RunOutput
    from market.settlement import canonical
    from market.settlement.ledger import Ledger, verify_proof

    ledger = Ledger(store)
    if args.main_store is not None:
        return _prove_cross(args, ledger)
    proof = ledger.prove(args.seq)
    ok = verify_proof(proof, dict(ledger.state.validators), ledger.state.threshold_k)
    doc = {"seq": proof.seq, "entry_hash": proof.entry_hash.hex(), "leaf_index": proof.index,
           "tree_size": proof.tree_size, "audit_path": [h.hex() for h in proof.path],
           "statement": canonical.decode(proof.statement),
           "signatures": [{"validator": v, "signature": s} for v, s in proof.signatures],
           "validators": dict(sorted(ledger.state.validators.items())), "threshold_k": ledger.state.threshold_k,
           "verified": ok}
    text = json.dumps(doc, indent=2, sort_keys=True)
    out = RunOutput(args.out, "ledger prove", {"path": str(args.path), "seq": args.seq})
    path = out.path("proof.json")
    if path is not None:
        path.write_text(text + "\n")
    out.figure("verified", ok)
    if out.enabled:  # summary.json (its versions block imports the whole stack: only when asked)
        out.finish()
    print(text)
    return 0 if ok else 1


def _prove_cross(args, side) -> int:
    """Cross-chain proof as JSON (proof.json under --out); exit 1 if it does not verify offline."""
    import json

    from colorgrid.results import RunOutput
    from market.settlement.chains import prove_cross, verify_cross_proof
    from market.settlement.ledger import Ledger

    main = Ledger(args.main_store)
    proof = prove_cross(side, main, args.seq)
    problem = verify_cross_proof(proof, dict(main.state.validators), main.state.threshold_k)
    doc = dict(proof.to_json(), main_validators=dict(sorted(main.state.validators.items())),
               main_threshold_k=main.state.threshold_k, verified=not problem, reason=problem)
    text = json.dumps(doc, indent=2, sort_keys=True)
    out = RunOutput(args.out, "ledger prove", {"path": str(args.path), "seq": args.seq, "main": str(args.main)})
    path = out.path("proof.json")
    if path is not None:
        path.write_text(text + "\n")
    out.figure("verified", not problem)
    if out.enabled:
        out.finish()
    print(text)
    if problem:
        print(f"colorgrid ledger prove: cross-chain proof does not verify: {problem}", file=sys.stderr)
    return 1 if problem else 0


def _anchor(args, store) -> int:
    """Anchor the not-yet-anchored checkpoints, then compare all; exit 1 on any mismatch.  With
    --main, the anchored ledger is the main chain and PATH (a sidechain) is checked through it."""
    from colorgrid.results import RunOutput
    from market.settlement.evm.anchor import (EvmSettlementChain, anchor_checkpoints, check_anchors,
                                              check_side_through_main)
    from market.settlement.evm.backends import JsonRpcBackend
    from market.settlement.ledger import Ledger

    side = store if args.main_store is not None else None
    anchored_store = args.main_store if side is not None else store
    chain = EvmSettlementChain(JsonRpcBackend(args.rpc) if args.rpc else None, address=args.contract)
    anchored = [] if args.check_only else anchor_checkpoints(anchored_store, chain)
    mismatched = check_anchors(anchored_store, chain)
    out = RunOutput(args.out, "ledger anchor", {"path": str(args.path), "rpc": args.rpc, "contract": args.contract,
                                                "check_only": args.check_only, "main": args.main})
    out.figure("contract", chain.address)
    out.figure("checkpoints", len(anchored_store.checkpoints()))
    out.figure("anchored_now", len(anchored))
    out.figure("mismatched_periods", mismatched)
    what = "main-chain checkpoint(s)" if side is not None else "checkpoint(s)"
    print(f"contract {chain.address}: anchored {len(anchored)} {what} now"
          + (f" (periods {anchored[0]}..{anchored[-1]})" if anchored else ""))
    problems = []
    if mismatched:
        problems.append(f"checkpoints of periods {mismatched} differ from the chain's anchors (or are not anchored)")
    else:
        print(f"all {len(anchored_store.checkpoints())} {what} match their anchors")
    chains = Ledger(anchored_store).state.chains
    if chains and side is None:  # a main chain: what its anchors cover
        covered = sum(len(c["records"]) for c in chains.values())
        print(f"main chain: {len(chains)} sidechain(s) registered, {covered} sidechain checkpoint(s) recorded")
    if side is not None:
        rep = check_side_through_main(side, anchored_store, chain)
        problems += [f"{args.path}: {p}" for p in rep.problems]
        out.figure("side_checkpoints", rep.checkpoints)
        out.figure("side_anchored_through_main", rep.anchored)
        out.figure("side_not_recorded", rep.not_recorded)
        out.figure("side_not_in_main_checkpoint", rep.not_in_main_checkpoint)
        if not rep.problems:
            print(f"{args.path}: {rep.anchored} of {rep.checkpoints} checkpoint(s) anchored through the main chain "
                  f"({rep.not_recorded} not recorded yet, {rep.not_in_main_checkpoint} not in a main checkpoint yet)")
    out.figure("problems", problems)
    if out.enabled:  # summary.json (its versions block imports the whole stack: only when asked)
        out.finish()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _verify(args, store) -> int:
    from colorgrid.results import RunOutput
    from market.settlement.verify import verify_ledger

    report = verify_ledger(store, args.trusted_operator_key, max(1, args.workers))
    problems = [] if report.ok else [f"{args.path}: {report.describe()}"]
    problems += _verify_chains(args, store, max(1, args.workers), report.ok)
    out = RunOutput(args.out, "ledger verify", {"path": str(args.path), "trusted_operator_key": args.trusted_operator_key})
    out.figure("ledger_ok", report.ok)
    out.figure("entries_checked", report.entries_checked)
    out.figure("checkpoints_checked", report.checkpoints_checked)
    out.figure("bad_seq", report.bad_seq)
    out.figure("bad_checkpoint", report.bad_checkpoint)
    out.figure("reason", report.reason)
    out.figure("uncovered_entries", report.uncovered_entries)
    out.figure("minted_ntok", report.minted_ntok, "ntok")
    out.figure("burned_ntok", report.burned_ntok, "ntok")
    out.figure("chain_problems", problems[1:] if not report.ok else problems)
    if report.ok:
        out.write_csv("balances.csv", ("account", "balance_ntok"), sorted(report.balances_ntok.items()))
    if out.enabled:  # summary.json (its versions block imports the whole stack: only when asked)
        out.finish()
    print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    for problem in problems[0 if report.ok else 1:]:
        print(problem, file=sys.stderr)
    return 0 if not problems else 1


def _verify_chains(args, store, workers: int, primary_ok: bool) -> list[str]:
    """--peer and --main: each ledger verified, exchange pairs between them, records on the main chain."""
    from market.settlement.chains import check_against_main, check_conservation, check_exchange_pairs
    from market.settlement.verify import verify_ledger

    problems = []
    sides = [(str(args.path), store)] + [(p, s) for p, s in zip(args.peer, args.peer_stores)]
    for path, other in sides[1:] + ([(args.main, args.main_store)] if args.main_store is not None else []):
        rep = verify_ledger(other, workers=workers)
        if rep.ok:
            print(f"{path}: {rep.describe()}")
        else:
            problems.append(f"{path}: {rep.describe()}")
    if problems or not primary_ok:
        return problems  # pairs and records are only compared between ledgers that verify
    if len(sides) > 1:
        pairs = check_exchange_pairs([s for _, s in sides])
        problems += pairs
        if not pairs:
            print(f"exchange pairs OK between {len(sides)} chains")
        rows, supply_problems = check_conservation([s for _, s in sides])
        problems += supply_problems
        if not supply_problems:
            minted, burned = sum(r["minted_ntok"] for r in rows), sum(r["burned_ntok"] for r in rows)
            print(f"supply conserved across {len(sides)} chains: minted {minted} ntok, burned {burned} ntok, "
                  f"circulating {minted - burned} ntok, clearing accounts net to zero")
    if args.main_store is not None:
        for path, side in sides:
            found, unrecorded = check_against_main(side, args.main_store)
            problems += [f"{path}: {p}" for p in found]
            if not found:
                print(f"{path}: every recorded checkpoint matches the main chain ({unrecorded} not recorded yet)")
    return problems
