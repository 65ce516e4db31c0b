"""Entry point of the `colorgrid` command.

Each subcommand lives in its own module under `colorgrid.commands`, imported only when that
subcommand runs (so `colorgrid te …` never pays for importing the power-flow stack). A command
module exposes:

    HELP: str                          one-line description
    add_arguments(parser) -> None      argparse options
    run(args) -> int                   exit code

Every command that computes something accepts `--out DIR` (see docs/cli.md and
colorgrid.results).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module under colorgrid.commands
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "simulate": "simulate",
    "powerflow": "powerflow",
    "te": "te",
    "ledger": "ledger",
    "agent": "agent",
    "controller": "controller",
    "fleet": "fleet",
    "dispatch": "dispatch",
}


def _load(name: str):
    return importlib.import_module(f"colorgrid.commands.{COMMANDS[name]}")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorgrid",
        description="colorgrid: tiered demand shaping, distribution power flow and local markets.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("command", choices=sorted(COMMANDS), help="subcommand (colorgrid CMD --help)")
    return parser


def _version() -> str:
    from colorgrid import __version__

    return f"colorgrid {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv)  # prints help / error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = _load(name)
    parser = argparse.ArgumentParser(prog=f"colorgrid {name}", description=getattr(module, "HELP", None))
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
