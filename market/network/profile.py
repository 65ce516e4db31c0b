"""Voltage profile data: electrical distance of every bus from the source (for profile plots).

Distance is the shortest path over lines and transformers weighted by the mean self resistance
of each line (ohms; transformers count 0), found with Dijkstra from the source bus.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from market.network.model import Feeder


def bus_distance_ohm(feeder: Feeder) -> dict[str, float]:
    names = list(feeder.buses)
    pos = {b: i for i, b in enumerate(names)}
    rows, cols, w = [], [], []
    for line in feeder.lines:
        r = float(np.mean(np.real(np.diag(np.asarray(line.z_ohm)))))
        rows.append(pos[line.bus1])
        cols.append(pos[line.bus2])
        w.append(max(r, 1e-9))
    for tr in feeder.transformers:
        for wd in tr.windings[1:]:
            rows.append(pos[tr.windings[0].bus])
            cols.append(pos[wd.bus])
            w.append(1e-9)
    g = sp.coo_matrix((w, (rows, cols)), shape=(len(names), len(names))).tocsr()
    dist = dijkstra(g, directed=False, indices=pos[feeder.source.bus])
    return {b: float(dist[pos[b]]) if np.isfinite(dist[pos[b]]) else float("nan") for b in names}
