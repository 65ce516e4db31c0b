"""Shared helpers for the power-flow tests: where the shared feeders live."""
from __future__ import annotations

from pathlib import Path

import pytest

FEEDERS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "feeders"


@pytest.fixture(scope="session")
def feeders_dir() -> Path:
    assert FEEDERS.is_dir(), f"shared feeders not found at {FEEDERS}"
    return FEEDERS
