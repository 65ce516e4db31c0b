"""`colorgrid serve`: the operator surface — the stakeholder HTTP API, the dashboard and /metrics
(portal/) with uvicorn; `colorgrid portal` is the same command.

    colorgrid serve --registry registry.db --results out/ [--broker mqtt://127.0.0.1:1883 \\
        --hmac-key-file dispatch.key] [--db portal.db | --db postgresql://user@host/db] --port 8080
    colorgrid serve --demo          # broker + controller + simulated fleet + API + dashboard

Reads the controller's registry (read only) and results folder, the market results and ledger
in the same folder; goal schedules are signed with the dispatch key and published to the broker
(without --broker the API returns the signed payload). Tokens: `colorgrid token create`. The
fleet's rounds are copied into the store's time series (`--retention-days`).

`--demo` starts, in this one process, a private broker, the cloud controller and a simulated
gateway fleet (colorgrid/commands/serve_demo.py), serves them, creates an admin token and a
read token and prints them with the URL.
"""
from __future__ import annotations

import sys

HELP = "serve the stakeholder HTTP API + dashboard + /metrics (--demo: with a broker, controller and fleet)"


def port_number(text: str) -> int:
    import argparse

    from colorgrid.args import non_negative_int

    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in 0..65535 (0 = any free port), got {value}")
    return value


def existing_dir(text: str) -> str:
    import argparse
    from pathlib import Path

    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"not a directory: {text}")
    return text


def add_arguments(parser) -> None:
    from colorgrid.args import count, existing_file, int_at_least, non_negative_int, positive_float

    parser.epilog = ("example: colorgrid serve --demo   |   colorgrid serve --registry registry.db "
                     "--results out --db postgresql://postgres@127.0.0.1/colorgrid --port 8080")
    parser.add_argument("--demo", action="store_true",
                        help="start a private broker, the controller and a simulated fleet and serve them")
    parser.add_argument("--db", default=None, metavar="URL",
                        help="portal store: tokens, audit log, goal schedules, fleet series — a SQLite path "
                             "(default portal.db; with --demo DEMO_DIR/portal.db) or postgresql://…")
    parser.add_argument("--registry", type=existing_file, default=None, metavar="PATH",
                        help="the controller's registry (colorgrid controller --db PATH), read only "
                             "(required without --demo)")
    parser.add_argument("--results", type=existing_dir, default=None, metavar="DIR",
                        help="results folder: rounds.csv, market tables, ledger.sqlite (DIR/NAME or DIR/*/NAME)")
    parser.add_argument("--broker", default=None, metavar="URL", help="mqtt://host[:port] to publish dispatches to")
    parser.add_argument("--hmac-key-file", type=existing_file, default=None, metavar="PATH",
                        help="dispatch signing key: hex text, or JSON {key_id: hex} (with --key-id)")
    parser.add_argument("--key-id", default="dispatch", help="key id named in dispatches (default dispatch)")
    parser.add_argument("--username", default=None, help="broker user (the ACL's dispatcher)")
    parser.add_argument("--password-file", type=existing_file, default=None, metavar="PATH")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8080, help="TCP port (default 8080; 0 = any free port)")
    parser.add_argument("--max-body-kib", type=int_at_least(1), default=1024, help="largest request body, KiB (1024)")
    parser.add_argument("--retention-days", type=positive_float, default=30.0,
                        help="keep the fleet time series this many days (default 30)")
    parser.add_argument("--audit-retention-days", type=positive_float, default=None,
                        help="keep audit rows this many days (default: for ever)")
    parser.add_argument("--record-every-s", type=positive_float, default=2.0,
                        help="copy new rounds into the store's time series this often (default 2 s)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    demo = parser.add_argument_group("--demo")
    demo.add_argument("--gateways", type=count, default=12, help="simulated gateways (default 12)")
    demo.add_argument("--devices-per-gateway", type=count, default=20, help="devices per gateway (default 20)")
    demo.add_argument("--groups", type=count, default=2, help="control groups g0, g1, … (default 2)")
    demo.add_argument("--seed", type=non_negative_int, default=1, help="fleet and key seed (default 1)")
    demo.add_argument("--demo-dir", default=None, metavar="DIR",
                      help="where the demo keeps its registry, rounds.csv and portal.db (default: a new temp dir)")


def build_app(args, live=None, registry_path=None, results=None, signer_key=None, broker=None):
    """(app, tokens, store, series job) for the flags; ValueError subclasses name the flag."""
    from cloud.config import ConfigError, read_key
    from cloud.service import ServiceError
    from portal.api import create_app
    from portal.db import StoreError, open_database
    from portal.dispatcher import MqttDispatcher, ReturnDispatcher, Signer
    from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder, SourceError
    from portal.market import LedgerReader, MarketResults
    from portal.series import Retention, SeriesJob, SeriesRecorder
    from portal.store import DbPortalStore
    from portal.tokens import DbTokenStore, now_ms

    registry_path = registry_path or args.registry
    results = results or args.results
    broker = broker or args.broker
    if registry_path is None:
        raise ValueError("argument --registry: required (the controller's registry), or use --demo")
    hmac_key_file = signer_key or args.hmac_key_file
    if broker and not hmac_key_file:
        raise ValueError("argument --hmac-key-file: required with --broker (dispatches are signed)")
    signer = None
    if hmac_key_file:
        try:
            signer = Signer(*read_key(hmac_key_file, args.key_id))
        except ConfigError as exc:
            raise ValueError(f"argument --hmac-key-file: {exc}") from None
    dispatcher = ReturnDispatcher()
    if broker:
        from pathlib import Path

        password = Path(args.password_file).read_text().strip() if args.password_file else None
        try:
            dispatcher = MqttDispatcher(broker, args.username, password)
        except ServiceError as exc:
            raise ValueError(f"argument --broker: {exc}") from None
    try:
        registry = ReadOnlyRegistry(registry_path)
    except SourceError as exc:
        raise ValueError(f"argument --registry: {exc}") from None
    try:
        db = open_database(args.db)
    except StoreError as exc:
        raise ValueError(f"argument --db: {exc}") from None
    tokens, store = DbTokenStore(db), DbPortalStore(db)
    folder = ResultsFolder(results)
    fleet = FleetView(registry, folder, live=live)
    app = create_app(tokens, store, fleet, MarketResults(folder) if results else None,
                     LedgerReader(folder) if results else None, signer, dispatcher,
                     max_body_bytes=args.max_body_kib * 1024, dashboard=True, live=live)
    job = SeriesJob(SeriesRecorder(fleet, store), store, Retention(args.retention_days, args.audit_retention_days),
                    now_ms, every_s=args.record_every_s)
    return app, tokens, store, job


def _clean_stop_server():
    import uvicorn

    class CleanStopServer(uvicorn.Server):
        """SIGINT/SIGTERM stop the service cleanly with exit 0 (uvicorn would re-raise the signal)."""

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return CleanStopServer


def _listen(args):
    import socket

    infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    return sock


def _demo_tokens(tokens, store) -> tuple[str, str]:
    from portal.tokens import now_ms

    admin, rec_a = tokens.create("demo-admin", ["admin"], 7 * 86_400, ["*"])
    read, rec_r = tokens.create("demo-viewer", ["fleet:read", "market:read", "metrics:read"], 7 * 86_400, ["*"])
    for rec in (rec_a, rec_r):
        store.audit(now_ms(), "cli", "-", "token.create", f"token:{rec.token_id}", "ok",
                    {"stakeholder": rec.stakeholder, "scopes": list(rec.scopes), "groups": list(rec.groups),
                     "user": "serve --demo"})
    return admin, read


def run(args) -> int:
    import logging

    import uvicorn

    from colorgrid.args import error

    prog = "colorgrid serve"
    world = live = None
    if args.demo and (args.registry or args.results or args.broker):
        return error(prog, "argument --demo: starts its own broker, controller and fleet; "
                           "leave out --registry, --results and --broker")
    if args.demo:
        import tempfile
        from pathlib import Path

        from colorgrid.commands.serve_demo import DISPATCH_KEY_ID, DemoWorld
        from portal.live import ControllerProbe

        folder = Path(args.demo_dir) if args.demo_dir else Path(tempfile.mkdtemp(prefix="colorgrid-serve-demo-"))
        if args.db is None:
            args.db = str(folder / "portal.db")
        args.key_id = DISPATCH_KEY_ID
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("colorgrid.cloud.controller").setLevel(logging.ERROR)
        print(f"demo: starting a broker, the controller and {args.gateways} gateways x "
              f"{args.devices_per_gateway} devices in {args.groups} group(s) (files in {folder})", flush=True)
        world = DemoWorld(folder, args.gateways, args.devices_per_gateway, args.groups, args.seed)
        try:
            world.start()
        except Exception as exc:
            return error(prog, f"--demo: {exc}")
        live = ControllerProbe(world.core, world.ctl.service)
    elif args.db is None:
        args.db = "portal.db"
    try:
        try:
            if world is not None:
                app, tokens, store, job = build_app(args, live, world.registry_path, str(world.results),
                                                    str(world.dispatch_key_path), world.broker_url)
            else:
                app, tokens, store, job = build_app(args)
        except ValueError as exc:
            return error(prog, str(exc))
        try:
            sock = _listen(args)
        except OSError as exc:
            return error(prog, f"argument --port: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{port}"
        print(f"colorgrid portal on {url} (OpenAPI at /docs; tokens: colorgrid token create --db {args.db})",
              flush=True)
        if world is not None:
            admin, read = _demo_tokens(tokens, store)
            print(f"open {url}/ and sign in with a token (revoke: colorgrid token revoke ID --db {args.db})")
            print(f"read token (fleet, market, metrics): {read}")
            print(f"admin token: {admin}", flush=True)
        job.start()
        config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("info", "debug"))
        server = _clean_stop_server()(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            sock.close()
            job.stop()
    finally:
        if world is not None:
            world.stop()
    print("colorgrid portal stopped", file=sys.stderr)
    return 0
