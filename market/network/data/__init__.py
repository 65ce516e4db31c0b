"""Feeders shipped with the package (IEEE 13-node test feeder, OpenDSS format, public IEEE PES data)."""
from __future__ import annotations

from pathlib import Path

FEEDERS = {"ieee13": Path(__file__).resolve().parent / "ieee13" / "IEEE13Nodeckt.dss"}


def feeder_path(name: str) -> Path:
    """Path of a shipped feeder's master .dss file; KeyError names the known feeders."""
    try:
        return FEEDERS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown feeder {name!r}; shipped: {', '.join(sorted(FEEDERS))}") from None
