"""Shared cases for the LEM tests: a hand-built 3-bus radial network and the IEEE 13 feeder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from market.lem.network_data import IntervalNetwork, NetworkData

IEEE13 = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "feeders" / "ieee13" / "IEEE13Nodeckt.dss"


def three_bus(intervals: int = 1, load2_kw: float = 50.0, load3_kw: float = 100.0,
              limit23_kw: float = 60.0) -> NetworkData:
    """Substation 1 — bus 2 — bus 3, single phase, lossless. A flow is the sum of what lies
    downstream: F12 = −(p2 + p3), F23 = −p3 (PTDFs by hand)."""
    ptdf = np.array([[-1.0, -1.0], [0.0, -1.0]])
    d = np.array([load2_kw, load3_kw])
    iv = IntervalNetwork(["2.1", "3.1"], d, -d, float(d.sum()), np.zeros(2), ["line.12.1", "line.23.1"], ptdf,
                         ptdf @ -d, np.array([1e6, limit23_kw]), [], np.zeros((0, 2)), np.zeros(0), np.zeros(0),
                         np.zeros(0))
    return NetworkData("1", [iv] * intervals, {"2": ["2.1"], "3": ["3.1"]})


@pytest.fixture(scope="session")
def ieee13_net():
    from market.lem.network_data import build_network_data
    from market.network import FeederNetwork

    assert IEEE13.is_file(), f"IEEE 13 feeder not found at {IEEE13}"
    return build_network_data(FeederNetwork.from_dss(IEEE13), 4, [0.6, 0.8, 1.0, 0.9])
