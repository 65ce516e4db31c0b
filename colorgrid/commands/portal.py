"""`colorgrid portal`: serve the stakeholder HTTP API (portal/api.py) with uvicorn.

    colorgrid portal --db portal.db --registry registry.db --results out/ \\
        [--broker mqtt://127.0.0.1:1883 --hmac-key-file dispatch.key] --host 127.0.0.1 --port 8080

Reads the controller's registry (read only) and results folder, the market results and ledger
in the same folder; goal schedules are signed with the dispatch key and published to the broker
(without --broker the API returns the signed payload). Tokens: `colorgrid token create`.
"""
from __future__ import annotations

import sys

HELP = "serve the stakeholder HTTP API (fleet twin, goals, market, ledger; OpenAPI at /docs)"


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
    from colorgrid.args import existing_file, int_at_least

    parser.add_argument("--db", default="portal.db", metavar="PATH",
                        help="portal database: tokens, audit log, goal schedules (default portal.db)")
    parser.add_argument("--registry", required=True, type=existing_file, metavar="PATH",
                        help="the controller's registry (colorgrid controller --db PATH), read only")
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
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def build_app(args):
    """The app the flags describe; ValueError subclasses name the flag."""
    import sqlite3
    from pathlib import Path

    from cloud.config import ConfigError, read_key
    from cloud.service import ServiceError
    from portal.api import create_app
    from portal.dispatcher import MqttDispatcher, ReturnDispatcher, Signer
    from portal.fleet import FleetView, ReadOnlyRegistry, ResultsFolder, SourceError
    from portal.market import LedgerReader, MarketResults
    from portal.store import SqlitePortalStore
    from portal.tokens import SqliteTokenStore

    if args.broker and not args.hmac_key_file:
        raise ValueError("argument --hmac-key-file: required with --broker (dispatches are signed)")
    signer = None
    if args.hmac_key_file:
        try:
            signer = Signer(*read_key(args.hmac_key_file, args.key_id))
        except ConfigError as exc:
            raise ValueError(f"argument --hmac-key-file: {exc}") from None
    dispatcher = ReturnDispatcher()
    if args.broker:
        password = Path(args.password_file).read_text().strip() if args.password_file else None
        try:
            dispatcher = MqttDispatcher(args.broker, args.username, password)
        except ServiceError as exc:
            raise ValueError(f"argument --broker: {exc}") from None
    try:
        registry = ReadOnlyRegistry(args.registry)
    except SourceError as exc:
        raise ValueError(f"argument --registry: {exc}") from None
    try:
        tokens, store = SqliteTokenStore(args.db), SqlitePortalStore(args.db)
    except (sqlite3.Error, OSError) as exc:
        raise ValueError(f"argument --db: cannot open {args.db}: {exc}") from None
    folder = ResultsFolder(args.results)
    app = create_app(tokens, store, FleetView(registry, folder),
                     MarketResults(folder) if args.results else None,
                     LedgerReader(folder) if args.results else None,
                     signer, dispatcher, max_body_bytes=args.max_body_kib * 1024, dashboard=True)
    return app


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


def run(args) -> int:
    import socket

    import uvicorn

    from colorgrid.args import error

    prog = "colorgrid portal"
    try:
        app = build_app(args)
    except ValueError as exc:
        return error(prog, str(exc))
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
        family = infos[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        return error(prog, f"argument --port: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"colorgrid portal on http://{host}:{port} (OpenAPI at /docs; tokens: colorgrid token create --db {args.db})",
          flush=True)
    _CleanStopServer = _clean_stop_server()
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.log_level in ("info", "debug"))
    server = _CleanStopServer(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    print("colorgrid portal stopped", file=sys.stderr)
    return 0
