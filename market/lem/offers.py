"""A realistic mixed set of offers and bids on a feeder, deterministic per seed (for tests, benches
and users: `colorgrid market offers`).

Scaled to the feeder: L = the feeder's total load (kW at load factor 1.0), n = its number of loads,
`density` multiplies the counts. Participants sit at the feeder's load points (a three-phase load:
the whole bus `"671"`; a one-/two-phase load: its first phase node `"652.1"`):

| family | count | size | price, USD/MWh |
|---|---|---|---|
| PV (`offers`, one step, `p_max_kw` = a clear-sky bell 06–18 h × clouds) | 0.4·n | Σ ≈ 0.3·L | 0–8 |
| other generation (`offers`, 2–3 rising steps) | 0.2·n | ≈ 0.02·L a step | 40–150 |
| storage (2–4 h, SoC 50 % at start and end) | 0.25·n | Σ ≈ 0.15·L | discharge cost 2–10 |
| dispatchable DG with commitment (`units`) | 0.1·n | Σ ≈ 0.2·L, p_min 30 % | 55–120, start-up 10–80 USD |
| price-responsive demand (`bids`, 2–3 falling steps) | 0.6·n | 5–10 % of its load a step | 250 … 20 |
| block offers (2–6 consecutive intervals) | 0.25·n | ≈ 0.02·L | 35–95 |
| bilateral schedule (flat, between two load points) | 1 | ≈ 0.01·L | — |

Complex blocks among the blocks: every 3rd (from the 2nd) with a minimum acceptance ratio 0.3–0.8,
every 4th (from the 4th) the child of the block before it, blocks 5k and 5k+1 exclusive alternatives.
Daily energy limits: every 2nd other-generation offer and every unit at most 40–70 % of its daily
capacity; every 3rd demand bid at least 20–40 % of its steps over the day.

(each count at least 1). The ISO curve is `profiles.iso_price`. Values are rounded to 0.001; the
same feeder, seed, density and intervals give the same document, byte for byte.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from market.lem.profiles import iso_price
from market.lem.schema import load_market
from vocab.location import location_id


def _r(x: float) -> float:
    return round(float(x), 3)


def load_points(feeder) -> list[tuple[str, float]]:
    """[(location id, kW)] of the feeder's loads, in file order."""
    out = []
    for ld in feeder.loads:
        phases = [k for k in ld.nodes if 1 <= k <= 3]
        bus = ld.bus.lower()
        three = len(set(phases)) == 3 and len([k for k in feeder.buses[ld.bus].nodes if 1 <= k <= 3]) == 3
        out.append((location_id(bus) if three else location_id(bus, phases[0]), float(ld.kw)))
    return out


def _sun(intervals: int) -> np.ndarray:
    hour = np.arange(intervals) % 24 + 0.5
    return np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0.0, None)


def generate_offers(feeder, seed: int = 0, intervals: int = 24, density: float = 1.0,
                    iso_price_usd_per_mwh: list[float] | None = None) -> dict:
    """The offers document (a dict valid against the schema) for `feeder` (a market.network Feeder)."""
    if intervals < 1 or not density > 0:
        raise ValueError(f"need intervals >= 1 and density > 0, got {intervals}, {density}")
    rng = np.random.default_rng(seed)
    points = load_points(feeder)
    if not points:
        raise ValueError(f"feeder {feeder.name!r} has no loads to scale the market to")
    total = sum(kw for _, kw in points)
    n = len(points)

    def count(share: float) -> int:
        return max(1, int(round(share * n * density)))

    def where(k: int) -> list[int]:
        return list(rng.choice(n, size=k, replace=k > n))

    sun = _sun(intervals)
    doc: dict = {"intervals": intervals, "interval_h": 1.0,
                 "iso": {"import_price_usd_per_mwh": [_r(x) for x in (iso_price_usd_per_mwh or iso_price(intervals))]},
                 "offers": [], "bids": [], "blocks": [], "storage": [], "units": []}
    n_pv = count(0.4)
    for i, j in enumerate(where(n_pv)):
        cap = 0.3 * total / n_pv * rng.uniform(0.6, 1.4)
        clouds = 1.0 - rng.uniform(0.0, 0.3, intervals)
        doc["offers"].append({"id": f"pv{i:03d}", "location": points[j][0],
                              "steps": [{"price_usd_per_mwh": _r(rng.uniform(0, 8)), "p_kw": _r(cap)}],
                              "p_max_kw": [_r(cap * s * c) for s, c in zip(sun, clouds)]})
    for i, j in enumerate(where(count(0.2))):
        prices = np.sort(rng.uniform(40, 150, rng.integers(2, 4)))
        doc["offers"].append({"id": f"gen{i:03d}", "location": points[j][0],
                              "steps": [{"price_usd_per_mwh": _r(p), "p_kw": _r(0.02 * total * rng.uniform(0.5, 1.5))}
                                        for p in prices]})
    n_st = count(0.25)
    for i, j in enumerate(where(n_st)):
        p = 0.15 * total / n_st * rng.uniform(0.6, 1.4)
        e = p * rng.uniform(2.0, 4.0)
        doc["storage"].append({"id": f"bat{i:03d}", "location": points[j][0], "p_charge_max_kw": _r(p),
                               "p_discharge_max_kw": _r(p), "e_max_kwh": _r(e), "soc_min_kwh": _r(0.1 * e),
                               "soc_initial_kwh": _r(0.5 * e), "eta_charge": _r(rng.uniform(0.92, 0.97)),
                               "eta_discharge": _r(rng.uniform(0.92, 0.97)),
                               "discharge_cost_usd_per_mwh": _r(rng.uniform(2, 10))})
    n_u = count(0.1)
    for i, j in enumerate(where(n_u)):
        p_max = 0.2 * total / n_u * rng.uniform(0.7, 1.3)
        doc["units"].append({"id": f"dg{i:03d}", "location": points[j][0], "p_min_kw": _r(0.3 * p_max),
                             "p_max_kw": _r(p_max), "price_usd_per_mwh": _r(rng.uniform(55, 120)),
                             "no_load_usd_per_h": _r(rng.uniform(1, 8)), "startup_usd": _r(rng.uniform(10, 80)),
                             "min_up_intervals": int(rng.integers(2, 5)), "min_down_intervals": int(rng.integers(1, 4))})
    for i, j in enumerate(where(count(0.6))):
        loc, kw = points[j]
        tops = (rng.uniform(150, 250), rng.uniform(60, 120), rng.uniform(20, 50))[:int(rng.integers(2, 4))]
        doc["bids"].append({"id": f"dr{i:03d}", "location": loc,
                            "steps": [{"price_usd_per_mwh": _r(p), "p_kw": _r(max(kw, 1.0) * rng.uniform(0.05, 0.1))}
                                      for p in tops]})
    for i, j in enumerate(where(count(0.25))):
        length = int(min(intervals, rng.integers(2, 7)))
        first = int(rng.integers(0, intervals - length + 1))
        doc["blocks"].append({"id": f"blk{i:03d}", "location": points[j][0],
                              "price_usd_per_mwh": _r(rng.uniform(35, 95)),
                              "p_kw": _r(0.02 * total * rng.uniform(0.5, 1.5)), "first_interval": first,
                              "n_intervals": length})
    _complex_blocks(doc["blocks"], rng)
    _energy_limits(doc, rng)
    a, b = (points[j][0] for j in rng.choice(n, size=2, replace=False)) if n > 1 else (points[0][0], None)
    if b is not None and a != b:
        doc["bilaterals"] = [{"id": "bil000", "from_location": a, "to_location": b,
                              "p_kw": [_r(0.01 * total * rng.uniform(0.5, 1.5))] * intervals}]
    load_market(doc)  # the generator's own output must be valid: fail loudly here, not in the user's run
    return doc


def _complex_blocks(blocks: list[dict], rng) -> None:
    """Every 3rd block (from the 2nd) accepts a share ≥ its minimum acceptance ratio; every 4th (from the
    4th) is the child of the one before; blocks 5k and 5k+1 are exclusive alternatives (unless linked)."""
    for j, b in enumerate(blocks):
        if j % 3 == 1:
            b["min_acceptance_ratio"] = _r(rng.uniform(0.3, 0.8))
        if j % 4 == 3:
            b["parent"] = blocks[j - 1]["id"]
    for j in range(0, len(blocks) - 1, 5):
        if blocks[j + 1].get("parent") != blocks[j]["id"]:
            blocks[j]["exclusive_group"] = blocks[j + 1]["exclusive_group"] = f"alt{j:03d}"


def _energy_limits(doc: dict, rng) -> None:
    """Daily energy limits: every 2nd other-generation offer and every unit at most 40–70 % of what it could
    give in a day; every 3rd demand bid takes at least 20–40 % of its steps over the day (e.g. an EV)."""
    hours = doc["intervals"] * doc["interval_h"]
    day = min(hours, 24.0)
    for o in doc["offers"]:
        if o["id"].startswith("gen") and int(o["id"][3:]) % 2 == 0:
            o["daily_energy_max_kwh"] = _r(rng.uniform(0.4, 0.7) * sum(st["p_kw"] for st in o["steps"]) * day)
    for u in doc["units"]:
        u["daily_energy_max_kwh"] = _r(rng.uniform(0.4, 0.7) * u["p_max_kw"] * day)
    for i, b in enumerate(doc["bids"]):
        if i % 3 == 0:
            b["daily_energy_min_kwh"] = _r(rng.uniform(0.2, 0.4) * sum(st["p_kw"] for st in b["steps"]) * day)


def write_offers(doc: dict, path: str | Path) -> Path:
    """Write the document as JSON (sorted keys, 2-space indent, final newline)."""
    path = Path(path)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def counts(doc: dict) -> dict[str, int]:
    """Participants per family, plus `offers_and_bids` (everything that offers or bids)."""
    out = {k: len(doc.get(k, [])) for k in ("offers", "bids", "blocks", "storage", "units")}
    out["offers_and_bids"] = sum(out.values())
    out["bilaterals"] = len(doc.get("bilaterals", []))
    blocks = doc.get("blocks", [])
    out["complex_blocks"] = sum(1 for b in blocks if b.get("min_acceptance_ratio", 1.0) < 1.0 or b.get("parent")
                                or b.get("exclusive_group"))
    return out
