"""`colorgrid export`: tables out of the portal store, a market results folder or a settlement
ledger, as CSV or Parquet (pyarrow), with summary.json, into --out DIR.

    colorgrid export --what tracking   --db portal.db                 --format parquet --out exp/
    colorgrid export --what market     --results out/lem              --format csv     --out exp/
    colorgrid export --what settlement --ledger out/te/ledger.sqlite  --format parquet --out exp/

- `tracking` (the store's fleet time series, `colorgrid serve`; `--db` a SQLite path or
  postgresql://…; `--group`, `--since-ts-ms`, `--until-ts-ms` narrow it) -> `tracking.*`:
  group, round_id, ts_ms, goal_kw, measured_enabled_kw, tracking_error_kw (measured − goal),
  n_live, n_fresh, n_missing, n_fail_safe, saturated, enabled_t{i}_kw;
- `market` (`--results DIR`, DIR/NAME or the newest DIR/*/NAME) -> one file per table found:
  dlmp, schedule, settlement (LEM), orders, trades, intervals, balances (P2P);
- `settlement` (`--ledger PATH`, or DIR/ledger.sqlite of `--results`) -> `ledger_entries.*`
  (seq, kind, signer, body_json, hash_hex, sig_hex) and `ledger_checkpoints.*` (period,
  first_seq, last_seq, statement_json, signatures), plus settlement/balances tables of `--results`.

Parquet columns are typed (int64, double, bool, string); a column mixing integers and decimals
is double, one with text is string; empty cells are nulls.
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "export tracking (store), market or settlement tables as CSV or Parquet"
WHAT = ("tracking", "market", "settlement")
FORMATS = ("csv", "parquet")


def add_arguments(parser) -> None:
    from colorgrid.args import non_negative_int

    parser.epilog = ("example: colorgrid export --what tracking --db portal.db --format parquet --out exp/")
    parser.add_argument("--what", required=True, choices=WHAT, help="what to export")
    parser.add_argument("--format", default="csv", choices=FORMATS, help="csv or parquet (default csv)")
    parser.add_argument("--out", required=True, metavar="DIR", help="write the tables and summary.json here")
    parser.add_argument("--db", default="portal.db", metavar="URL",
                        help="tracking: the portal store (SQLite path, default portal.db, or postgresql://…)")
    parser.add_argument("--group", default=None, help="tracking: only this control group")
    parser.add_argument("--since-ts-ms", type=non_negative_int, default=None, help="tracking: rows at or after (UTC ms)")
    parser.add_argument("--until-ts-ms", type=non_negative_int, default=None, help="tracking: rows before (UTC ms)")
    parser.add_argument("--results", default=None, metavar="DIR", help="market/settlement: a results folder")
    parser.add_argument("--ledger", default=None, metavar="PATH", help="settlement: a ledger.sqlite")


class ExportError(ValueError):
    """A source missing or unreadable (the message starts with the flag)."""


def tracking_table(args) -> dict[str, tuple[list[str], list[list]]]:
    from portal.db import StoreError, open_database
    from portal.store import DbPortalStore

    if "://" not in args.db and not Path(args.db).is_file():
        raise ExportError(f"argument --db: no such store {args.db} (colorgrid serve --db writes it)")
    try:
        db = open_database(args.db)
    except StoreError as exc:
        raise ExportError(f"argument --db: {exc}") from None
    try:
        rows = DbPortalStore(db).series(args.group, args.since_ts_ms, args.until_ts_ms)
    finally:
        db.close()
    k = max((len(r.enabled_kw) for r in rows), default=0)
    columns = ["group", "round_id", "ts_ms", "goal_kw", "measured_enabled_kw", "tracking_error_kw", "n_live",
               "n_fresh", "n_missing", "n_fail_safe", "saturated"] + [f"enabled_t{i}_kw" for i in range(k)]
    data = [[r.group, r.round_id, r.ts_ms, r.goal_kw, r.measured_enabled_kw, r.tracking_error_kw, r.n_live,
             r.n_fresh, r.n_missing, r.n_fail_safe, r.saturated] + (list(r.enabled_kw) + [None] * k)[:k]
            for r in rows]
    return {"tracking": (columns, data)}


def _results_folder(args):
    from portal.fleet import ResultsFolder

    if args.results is None:
        return None
    if not Path(args.results).is_dir():
        raise ExportError(f"argument --results: not a directory: {args.results}")
    return ResultsFolder(args.results)


def market_tables(args, names=None) -> dict[str, tuple[list[str], list[list]]]:
    from portal.fleet import SourceError
    from portal.market import TABLES, MarketResults

    folder = _results_folder(args)
    if folder is None:
        raise ExportError("argument --results: required with --what market (a market results folder)")
    market, out = MarketResults(folder), {}
    for name in names or TABLES:
        try:
            found = market.table(name)
        except SourceError as exc:
            raise ExportError(f"argument --results: {exc}") from None
        if found is not None:
            columns, rows = found
            out[name] = (columns, [[r.get(c) for c in columns] for r in rows])
    if names is None and not out:
        raise ExportError(f"argument --results: no market table ({', '.join(sorted(TABLES.values()))}) "
                          f"in {args.results}")
    return out


def settlement_tables(args) -> dict[str, tuple[list[str], list[list]]]:
    from market.settlement.canonical import decode
    from market.settlement.errors import StoreError
    from market.settlement.sqlite_store import SQLiteStore

    folder = _results_folder(args)
    path = Path(args.ledger) if args.ledger else (folder.find("ledger.sqlite") if folder else None)
    out = market_tables(args, ["settlement", "balances"]) if folder is not None else {}
    if path is None or not path.is_file():
        if out:
            return out
        raise ExportError(f"argument --ledger: {'no such file: ' + str(path) if path else 'required'} "
                          "(or --results DIR with ledger.sqlite / settlement.csv)")
    try:
        store = SQLiteStore(path, create=False)
    except StoreError as exc:
        raise ExportError(f"argument --ledger: {exc}") from None
    try:
        entries = [[e.seq, e.kind, e.signer, json.dumps(decode(e.body), sort_keys=True, default=str),
                    e.hash.hex(), e.sig.hex()] for e in store.entries()]
        checkpoints = [[c.period, c.first_seq, c.last_seq, json.dumps(decode(c.statement), sort_keys=True, default=str),
                        json.dumps(decode(c.signatures), sort_keys=True, default=str)] for c in store.checkpoints()]
    finally:
        store.close()
    out["ledger_entries"] = (["seq", "kind", "signer", "body_json", "hash_hex", "sig_hex"], entries)
    out["ledger_checkpoints"] = (["period", "first_seq", "last_seq", "statement_json", "signatures"], checkpoints)
    return out


def arrow_table(columns: list[str], rows: list[list]):
    """A pyarrow Table with one type per column (module docstring)."""
    import pyarrow as pa

    arrays = []
    for j, name in enumerate(columns):
        values = [r[j] for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {bool} and kinds:
            typ = pa.bool_()
        elif kinds <= {int}:
            typ = pa.int64() if kinds else pa.string()
        elif kinds <= {int, float}:
            typ, values = pa.float64(), [None if v is None else float(v) for v in values]
        else:
            typ, values = pa.string(), [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, type=typ))
    return pa.Table.from_arrays(arrays, names=columns)


def write_tables(out, tables: dict, fmt: str) -> None:
    for name, (columns, rows) in tables.items():
        if fmt == "csv":
            out.write_csv(f"{name}.csv", columns, [[("" if v is None else v) for v in r] for r in rows])
        else:
            import pyarrow.parquet as pq

            pq.write_table(arrow_table(columns, rows), out.path(f"{name}.parquet"))
        out.figure(f"{name}_rows", len(rows))


def run(args) -> int:
    from colorgrid.args import error
    from colorgrid.results import ResultsError, RunOutput

    prog = "colorgrid export"
    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return error(prog, "argument --format: parquet needs pyarrow (pip install pyarrow)")
    try:
        tables = {"tracking": tracking_table, "market": market_tables, "settlement": settlement_tables}[args.what](args)
    except ExportError as exc:
        return error(prog, str(exc))
    try:
        out = RunOutput(args.out, "export", vars(args))
        write_tables(out, tables, args.format)
        out.finish()
    except (OSError, ResultsError) as exc:
        return error(prog, f"argument --out: {exc}")
    for name, (columns, rows) in tables.items():
        print(f"{name}.{args.format}: {len(rows)} rows x {len(columns)} columns")
    print(f"exported to {args.out}/ (summary.json)")
    return 0
