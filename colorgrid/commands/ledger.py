"""`colorgrid ledger verify PATH`: verify a settlement ledger (SQLite) end to end."""
from __future__ import annotations

import sys

HELP = "verify a P2P settlement ledger: hash chain, signatures, rules, k-of-n checkpoints, tokens"


def add_arguments(parser) -> None:
    from colorgrid.results import add_out_argument

    sub = parser.add_subparsers(dest="action", required=True)
    verify = sub.add_parser("verify", help="verify every entry and checkpoint; exit 1 naming the first bad one")
    verify.add_argument("path", metavar="PATH", help="ledger database (e.g. OUT/ledger.sqlite from `te run`), "
                        "or a PostgreSQL DSN postgresql://… (with --namespace)")
    verify.add_argument("--namespace", default="te_ledger", help="PostgreSQL table prefix (default te_ledger)")
    verify.add_argument("--trusted-operator-key", metavar="HEX", default=None,
                        help="expected operator public key (64 hex); without it the genesis key is trusted")
    verify.add_argument("--workers", type=int, default=1, help="processes for signature checks (default 1)")
    add_out_argument(verify)


def run(args) -> int:
    from colorgrid.results import RunOutput
    from market.te.errors import StoreError
    from market.te.sqlite_store import SQLiteStore
    from market.te.verify import verify_ledger

    try:
        if str(args.path).startswith(("postgresql://", "postgres://")):
            from market.te.postgres_store import PostgresStore

            store = PostgresStore(args.path, args.namespace, create=False)
        else:
            store = SQLiteStore(args.path, create=False)
    except StoreError as exc:
        print(f"colorgrid ledger verify: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify_ledger(store, args.trusted_operator_key, max(1, args.workers))
    finally:
        store.close()
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
    if report.ok:
        out.write_csv("balances.csv", ("account", "balance_ntok"), sorted(report.balances_ntok.items()))
    out.finish()
    print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
