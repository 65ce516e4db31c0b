"""`colorgrid token create|list|revoke`: the portal's bearer tokens (portal/tokens.py).

    colorgrid token create --stakeholder dso --scope fleet:read --scope goals:write --group 671.1 --ttl 86400
    colorgrid token list
    colorgrid token revoke cgp_…|TOKEN_ID
    colorgrid token list --db postgresql://postgres@127.0.0.1/colorgrid

`create` prints the token once, as its last line; the database keeps only its SHA-256. Every
create and revoke is written to the portal's audit log (stakeholder `cli`).
"""
from __future__ import annotations

import sys

HELP = "portal bearer tokens: create (shown once), list, revoke"
DEFAULT_DB = "portal.db"


def add_arguments(parser) -> None:
    from colorgrid.args import positive_float
    from portal.tokens import SCOPES

    sub = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = sub.add_parser("create", help="create a token; its last line is the token (shown once)")
    create.add_argument("--stakeholder", required=True, help="who the token is for (1-64 of A-Z a-z 0-9 _ . -)")
    create.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                        help=", ".join(SCOPES[:-1]) + f" or {SCOPES[-1]} (repeatable)")
    create.add_argument("--group", action="append", default=[], metavar="GROUP",
                        help="control group the token may see and dispatch to (repeatable; '*' = all)")
    create.add_argument("--ttl", type=positive_float, required=True, metavar="S", help="lifetime in seconds")
    listing = sub.add_parser("list", help="every token: id, stakeholder, scopes, groups, expiry, status")
    revoke = sub.add_parser("revoke", help="revoke a token (by the token or its id); refused from its next call")
    revoke.add_argument("token", metavar="TOKEN|ID", help="the token (cgp_…) or its 12-hex-digit id")
    for p in (create, listing, revoke):
        p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                       help=f"portal store: a SQLite path (default {DEFAULT_DB}) or postgresql://…")


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:            # no user name in this environment: the audit still says "cli"
        return "?"


def _iso(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args) -> int:
    from colorgrid.args import error
    from portal.db import StoreError, open_database
    from portal.store import DbPortalStore
    from portal.tokens import DbTokenStore, TokenError, check_new, now_ms

    prog = f"colorgrid token {args.action}"
    if args.action == "create":          # a mistake is named before any database is touched
        try:
            check_new(args.stakeholder, args.scope, args.ttl, args.group)
        except TokenError as exc:
            flag = str(exc).split(":")[0]
            return error(prog, f"argument --{flag}: {str(exc).split(': ', 1)[1]}")
    try:
        db = open_database(args.db)
    except StoreError as exc:
        return error(prog, f"argument --db: {exc}")
    tokens, audit = DbTokenStore(db), DbPortalStore(db)
    try:
        now = now_ms()
        if args.action == "create":
            try:
                token, rec = tokens.create(args.stakeholder, args.scope, args.ttl, args.group, now)
            except TokenError as exc:
                flag = str(exc).split(":")[0]
                return error(prog, f"argument --{flag}: {str(exc).split(': ', 1)[1]}")
            audit.audit(now, "cli", "-", "token.create", f"token:{rec.token_id}", "ok",
                        {"stakeholder": rec.stakeholder, "scopes": list(rec.scopes), "groups": list(rec.groups),
                         "user": _who()})
            print(f"token {rec.token_id} for {rec.stakeholder}: scopes {','.join(rec.scopes)}; "
                  f"groups {','.join(rec.groups) or '-'}; expires {_iso(rec.expires_ts_ms)}")
            print("shown once; the database keeps only its SHA-256:")
            print(token)
        elif args.action == "list":
            rows = tokens.tokens()
            print(f"{'id':<12}  {'stakeholder':<16}  {'status':<7}  {'expires (UTC)':<20}  scopes / groups")
            for r in rows:
                print(f"{r.token_id:<12}  {r.stakeholder:<16}  {r.status(now):<7}  {_iso(r.expires_ts_ms):<20}  "
                      f"{','.join(r.scopes)} / {','.join(r.groups) or '-'}")
            print(f"{len(rows)} token(s) in {args.db}")
        else:
            try:
                rec = tokens.revoke(args.token, now)
            except TokenError as exc:
                return error(prog, f"argument TOKEN|ID: {str(exc).split(': ', 1)[1]}")
            audit.audit(now, "cli", "-", "token.revoke", f"token:{rec.token_id}", "ok",
                        {"stakeholder": rec.stakeholder, "user": _who()})
            print(f"token {rec.token_id} of {rec.stakeholder} revoked")
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0
