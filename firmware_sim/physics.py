"""Vectorized device physics: what each device *wants* to draw, round by round.

A device's demand (kW) is what it would draw if all its slices were enabled; the fleet's slices
carry demand × tier share. Two kinds:

* constant loads: demand = rated kW at all times;
* thermostatic loads (electric water heaters, air conditioners): a first-order thermal model with
  a hysteresis thermostat. With temperature θ (°C), ambient θ_a, time constant τ (s), thermal
  resistance R (°C/kW) and electric power actually drawn P = rated · call · enabled_fraction,
  the exact update over dt is (R = swing / rated: a device at full power settles `swing` °C
  away from ambient whatever its size)

      θ_∞ = θ_a + sign · R · P          (sign +1 heating, -1 cooling)
      θ  ← θ_∞ + (θ - θ_∞) · exp(-dt / τ)

  and the thermostat calls (call = 1) when θ leaves the dead band on the cold side of a heater
  (θ < set - band/2) or the warm side of a cooler (θ > set + band/2), and stops on the other side.
  Demand = rated · call: a disabled heater keeps calling as it cools, so disabled demand grows
  and comes back as a rebound when re-enabled — the effect the controller must live with.

`ThermalParams` gives typical values; each device draws its own set point and initial temperature
so the fleet starts desynchronized.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThermalParams:
    """One thermostatic load kind. Units in the names."""

    sign: float             # +1 heating (water heater), -1 cooling (air conditioner)
    set_c: float
    band_c: float
    ambient_c: float
    tau_s: float
    swing_c: float           # |θ_∞ - θ_a| at full power, °C
    set_spread_c: float = 1.0   # device set points drawn uniformly in ±spread/2


WATER_HEATER = ThermalParams(sign=1.0, set_c=52.0, band_c=4.0, ambient_c=20.0, tau_s=6 * 3600.0,
                             swing_c=58.5)
AIR_CONDITIONER = ThermalParams(sign=-1.0, set_c=22.0, band_c=1.0, ambient_c=32.0, tau_s=3600.0,
                                swing_c=15.0)
KINDS = {"water_heater": WATER_HEATER, "ac": AIR_CONDITIONER}


class ConstantLoads:
    """Demand = rated kW, always."""

    def __init__(self, rated_kw):
        self.rated_kw = np.asarray(rated_kw, dtype=float)

    def demand_kw(self) -> np.ndarray:
        return self.rated_kw

    def advance(self, dt_s: float, enabled_fraction: np.ndarray) -> np.ndarray:
        return self.rated_kw


class ThermostaticLoads:
    """A vector of thermostatic devices of one kind (see module docstring)."""

    def __init__(self, rated_kw, params: ThermalParams, rng: np.random.Generator):
        self.rated_kw = np.asarray(rated_kw, dtype=float)
        self.p = params
        n = self.rated_kw.size
        self.set_c = params.set_c + (rng.random(n) - 0.5) * params.set_spread_c
        half = params.band_c / 2.0
        self.theta_c = self.set_c + (rng.random(n) * 2.0 - 1.0) * half
        self.call = rng.random(n) < self.duty_estimate()
        if self.p.swing_c <= self.p.sign * (params.set_c - params.ambient_c) + params.band_c / 2 + params.set_spread_c / 2:
            raise ValueError("thermostatic load cannot reach its set point (swing_c too small)")

    def duty_estimate(self) -> np.ndarray:
        """Steady-state duty cycle of an uncontrolled device: (set - θ_a) / (R · rated)."""
        return np.clip(self.p.sign * (self.set_c - self.p.ambient_c) / self.p.swing_c, 0.0, 1.0)

    def demand_kw(self) -> np.ndarray:
        return self.rated_kw * self.call

    def advance(self, dt_s: float, enabled_fraction: np.ndarray) -> np.ndarray:
        """Advance dt with the given enabled share per device; return the new demand kW."""
        power_share = self.call * enabled_fraction          # P / rated
        theta_inf = self.p.ambient_c + self.p.sign * self.p.swing_c * power_share
        self.theta_c = theta_inf + (self.theta_c - theta_inf) * np.exp(-dt_s / self.p.tau_s)
        half = self.p.band_c / 2.0
        cold = (self.theta_c - self.set_c) * self.p.sign < -half     # needs energy
        warm = (self.theta_c - self.set_c) * self.p.sign > half      # satisfied
        self.call = (self.call | cold) & ~warm
        return self.demand_kw()


class MixedLoads:
    """Constant and thermostatic devices in one fleet; `kind[i]` in {"constant", "water_heater", "ac"}."""

    def __init__(self, rated_kw, kinds, rng: np.random.Generator):
        self.rated_kw = np.asarray(rated_kw, dtype=float)
        kinds = np.asarray(kinds)
        self.groups: list[tuple[np.ndarray, object]] = []
        for name in sorted(set(kinds.tolist())):
            idx = np.flatnonzero(kinds == name)
            if name == "constant":
                model: object = ConstantLoads(self.rated_kw[idx])
            elif name in KINDS:
                model = ThermostaticLoads(self.rated_kw[idx], KINDS[name], rng)
            else:
                raise ValueError(f"unknown load kind {name!r} (constant, water_heater, ac)")
            self.groups.append((idx, model))
        self._demand = np.zeros_like(self.rated_kw)
        for idx, model in self.groups:
            self._demand[idx] = model.demand_kw()

    def demand_kw(self) -> np.ndarray:
        return self._demand

    def advance(self, dt_s: float, enabled_fraction: np.ndarray) -> np.ndarray:
        for idx, model in self.groups:
            self._demand[idx] = model.advance(dt_s, enabled_fraction[idx])
        return self._demand
