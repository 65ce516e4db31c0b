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
    "aggregator": "aggregator",
    "fleet": "fleet",
    "dispatch": "dispatch",
    "serve": "serve",
    "portal": "portal",
    "token": "token",
    "export": "export",
    "market": "market",
    "vpp": "vpp",
    "day": "day",
}


def _load(name: str):
    return importlib.import_module(f"colorgrid.commands.{COMMANDS[name]}")


def _command_list() -> str:
    """One line per subcommand: its name and its module's HELP."""
    width = max(len(name) for name in COMMANDS)
    return "\n".join(f"  {name:<{width}}  {getattr(_load(name), 'HELP', '')}" for name in COMMANDS)


def _top_parser(describe: bool) -> argparse.ArgumentParser:
    from colorgrid.args import Parser

    parser = Parser(
        prog="colorgrid",
        description="colorgrid: tiered demand shaping, distribution power flow and local markets.",
        epilog=("commands:\n" + _command_list() + "\n\nrun `colorgrid CMD --help` for a command's flags"
                if describe else None),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("command", choices=list(COMMANDS), metavar="CMD",
                        help="one of: " + ", ".join(COMMANDS))
    return parser


def _version() -> str:
    from colorgrid import __version__

    return f"colorgrid {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] not in COMMANDS:
            # prints help (with every command's one-line description) or a one-line error
            _top_parser(describe=any(a in ("-h", "--help") for a in argv)).parse_args(argv)
            return 2
        from colorgrid.args import Parser

        name, rest = argv[0], argv[1:]
        module = _load(name)
        parser = Parser(prog=f"colorgrid {name}", description=getattr(module, "HELP", None))
        module.add_arguments(parser)
        args = parser.parse_args(rest)
    except SystemExit as exc:  # --help, --version, or a bad flag (its one line is printed): the exit code
        return exc.code if isinstance(exc.code, int) else 2
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
