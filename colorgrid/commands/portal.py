"""`colorgrid portal`: the former name of `colorgrid serve` (colorgrid/commands/serve.py), kept
as an alias with the same flags so existing scripts and docs keep working."""
from __future__ import annotations

from colorgrid.commands.serve import add_arguments, build_app, existing_dir, port_number, run  # noqa: F401

HELP = "the same as `colorgrid serve` (its former name)"
