"""A day of P2P trading: PV prosumers and consumers on a feeder, with synthetic prices.

Participant i sits at bus `b{i % 10 + 1:02d}` (or on the LEM's buses); a share `pv_share` has rooftop PV.  Powers in
kW, energies per interval in integer Wh.  Hour of day h = (interval + 0.5) x 24 / intervals.

    clear-sky PV      pv_kw(h) = kwp x max(0, sin(pi (h - 6) / 14))^1.2      (06:00 - 20:00)
    clouds            a day-wide cloudiness path c(h) in [0.3, 1] (AR(1) noise), the forecast
                      uses c; the actual output multiplies by (1 + 0.1 N(0,1)), clipped >= 0
    load              load_kw(h) = base x (0.6 + 0.5 exp(-(h-8)^2/4) + 0.9 exp(-(h-19)^2/6))
                      forecast exact, actual x (1 + 0.05 N(0,1))

Net forecast energy > 0 becomes a sell order, < 0 a buy order, with a limit price drawn
uniformly between the grid's buy (feed-in) and sell (retail) prices.  Meter readings report the
actual export and import.  Synthetic DLMPs (when no LEM output is given), USD/MWh:
dlmp(b_k, h) = base(h) x (1 + 0.01 k) + 12 [h in 17..21 and k >= 7]   (losses + evening
congestion at the feeder end), base(h) = 35 + 25 exp(-(h-19)^2/8) + 10 exp(-(h-8)^2/4).
Everything is drawn from one numpy Generator seeded with `seed`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from market.settlement.keys import KeyPair
from market.te.auction.model import Participant
from market.te.auction.prices import TablePriceLookup

PCC = "pcc"


@dataclass
class Scenario:
    participants: list[Participant]
    kwp: np.ndarray            # PV peak per participant (0 without PV), kW
    forecast_net_wh: np.ndarray  # [participant, interval], + export / - import
    actual_net_wh: np.ndarray
    limit_u: np.ndarray        # [participant, interval] uniform(0, 1) for the limit price
    arrival: np.ndarray        # [interval, participant] arrival permutation (CDA)
    hours: np.ndarray


def hours_of(intervals: int) -> np.ndarray:
    return (np.arange(intervals) + 0.5) * 24.0 / intervals


def clear_sky_pv_shape(hours: np.ndarray) -> np.ndarray:
    return np.clip(np.sin(math.pi * (hours - 6.0) / 14.0), 0.0, None) ** 1.2 * ((hours > 6) & (hours < 20))


def load_shape(hours: np.ndarray) -> np.ndarray:
    return 0.6 + 0.5 * np.exp(-((hours - 8) ** 2) / 4) + 0.9 * np.exp(-((hours - 19) ** 2) / 6)


def default_buses(n: int = 10) -> list[str]:
    return [f"b{k:02d}" for k in range(1, n + 1)]


def build_scenario(n_participants: int, intervals: int, seed: int, pv_share: float = 0.5,
                   buses: list[str] | None = None) -> Scenario:
    """Participant i sits at buses[i % len(buses)] (default b01..b10)."""
    buses = buses or default_buses()
    rng = np.random.default_rng(seed)
    hours = hours_of(intervals)
    has_pv = rng.random(n_participants) < pv_share
    kwp = np.where(has_pv, rng.uniform(3.0, 9.0, n_participants), 0.0)
    base_kw = rng.uniform(0.3, 1.2, n_participants)
    cloud = np.empty(intervals)
    c = rng.uniform(0.6, 1.0)
    for t in range(intervals):
        c = float(np.clip(0.9 * c + 0.1 * 0.85 + 0.08 * rng.standard_normal(), 0.3, 1.0))
        cloud[t] = c
    pv_fc = kwp[:, None] * clear_sky_pv_shape(hours)[None, :] * cloud[None, :]
    pv_act = np.clip(pv_fc * (1 + 0.1 * rng.standard_normal(pv_fc.shape)), 0.0, None)
    load_fc = base_kw[:, None] * load_shape(hours)[None, :]
    load_act = np.clip(load_fc * (1 + 0.05 * rng.standard_normal(load_fc.shape)), 0.0, None)
    wh_per_kw = 1000.0 * 24.0 / intervals
    forecast = np.rint((pv_fc - load_fc) * wh_per_kw).astype(np.int64)
    actual = np.rint((pv_act - load_act) * wh_per_kw).astype(np.int64)
    limit_u = rng.random((n_participants, intervals))
    arrival = np.stack([rng.permutation(n_participants) for _ in range(intervals)])
    participants = [Participant(f"p{i:03d}", buses[i % len(buses)], f"p{i:03d}", bool(has_pv[i]))
                    for i in range(n_participants)]
    return Scenario(participants, kwp, forecast, actual, limit_u, arrival, hours)


def synthetic_dlmps(intervals: int, buses: int = 10) -> TablePriceLookup:
    hours = hours_of(intervals)
    base = 35 + 25 * np.exp(-((hours - 19) ** 2) / 8) + 10 * np.exp(-((hours - 8) ** 2) / 4)
    table = {}
    for t in range(intervals):
        table[(PCC, t)] = float(base[t])
        for k in range(1, buses + 1):
            congestion = 12.0 if (17 <= hours[t] <= 21 and k >= 7) else 0.0
            table[(f"b{k:02d}", t)] = float(base[t] * (1 + 0.01 * k) + congestion)
    return TablePriceLookup(table)


def participant_keys(seed: int, participants: list[Participant]) -> tuple[dict[str, KeyPair], dict[str, KeyPair]]:
    """Deterministic participant and meter keys derived from the seed (simulation only)."""
    pkeys = {p.participant_id: KeyPair.derive(seed, p.key_id) for p in participants}
    mkeys = {p.participant_id: KeyPair.derive(seed, f"meter:{p.participant_id}") for p in participants}
    return pkeys, mkeys
