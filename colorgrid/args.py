"""Checked argument types and the one-line error convention of the `colorgrid` command.

A user mistake (a bad flag value, a missing file, an unknown option) exits with code 2 and ONE
line on stderr naming the flag:

    colorgrid te run: error: argument --pv-share: must be in [0, 1], got 2.0

`Parser` is the argparse parser every subcommand gets: its `error()` prints that one line (no
usage block) and a final check refuses a non-finite float given to any flag (`nan`, `inf`), so
a NaN never reaches a computation or a results file. The type functions below check ranges at
parse time; argparse names the flag in their message.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors on stderr (exit 2) and no non-finite floats."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        check_finite(self, ns)
        return ns


def _flag(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.metavar or action.dest


def _actions(parser: argparse.ArgumentParser, ns: argparse.Namespace):
    """(parser, action) of the parser and of the subparser that was chosen."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(ns, action.dest, None)
            if chosen in action.choices:
                yield from _actions(action.choices[chosen], ns)
        else:
            yield parser, action


def check_finite(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    for owner, action in _actions(parser, ns):
        value = getattr(ns, action.dest, None)
        if isinstance(value, float) and not math.isfinite(value):
            owner.error(f"argument {_flag(action)}: must be a finite number, got {value!r}")


def error(prog: str, message: str) -> int:
    """Print the one-line error for a mistake found after parsing; return exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _number(text: str, kind: type):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_at_least(low: int):
    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False):
    """A finite float in [low, high] ((low, high] with low_open)."""
    def parse(text: str) -> float:
        value = _number(text, float)
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {value:g}")
        return value
    parse.__name__ = "number"
    return parse


count = int_at_least(1)            # a count of things: >= 1
non_negative_int = int_at_least(0)  # a seed, an index, a penalty
finite_float = float_range()
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)
fraction = float_range(0.0, 1.0)


def existing_file(text: str) -> str:
    """A path to a readable, non-empty regular file (kept as the given text)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text}")
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror or exc}") from None
    if empty:
        raise argparse.ArgumentTypeError(f"file is empty: {text}")
    return text
