"""The batched build (line Yprims per conductor count, transformer Yprims per electrical type,
stacked assembly per block size) equals element-by-element formation and a naive assembly."""
from __future__ import annotations

import numpy as np
import pytest

from market.network.opendss_import import load_dss
from market.network.primitives import (line_yprim, line_yprims, source_yprim, transformer_yprim,
                                       transformer_yprims)
from market.network.ybus import build_network

CASES = ["ieee123/IEEE123Master.dss", "ieee37/ieee37.dss", "ieee4/4bus-oyod-unbal/4bus-OYOD-UnBal.dss",
         "lv-network-390/Master.dss"]


@pytest.mark.parametrize("path", CASES)
def test_batched_primitives_equal_one_by_one(feeders_dir, path):
    feeder = load_dss(feeders_dir / path)[0]
    for (conds, y), line in zip(line_yprims(feeder.lines), feeder.lines):
        c1, y1 = line_yprim(line)
        assert conds == c1 and np.array_equal(y, y1)
    for (conds, y), tr in zip(transformer_yprims(feeder.transformers), feeder.transformers):
        c1, y1 = transformer_yprim(tr)
        assert conds == c1 and np.array_equal(y, y1)


@pytest.mark.parametrize("path", CASES)
def test_ybus_equals_naive_elementwise_assembly(feeders_dir, path):
    """Y[i, j] = Σ over elements of Yprim[a, b] for conductors a → node i, b → node j (+ source)."""
    feeder = load_dss(feeders_dir / path)[0]
    net = build_network(feeder)
    y = np.zeros((net.n, net.n), complex)
    for blk in net.blocks:
        for a, i in enumerate(blk.index):
            for b, j in enumerate(blk.index):
                if i >= 0 and j >= 0:
                    y[i, j] += blk.yprim[a, b]
    sconds, syp = source_yprim(feeder.source)
    sidx = [net.index[c] for c in sconds]
    y[np.ix_(sidx, sidx)] += syp
    assert np.allclose(net.y.toarray(), y, rtol=1e-13, atol=1e-12 * np.abs(y).max())
