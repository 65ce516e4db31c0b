"""Scenario configuration: one dataclass, the same keys as `colorgrid simulate` flags / TOML.

TOML keys may be written with dashes (as the flags) or underscores. Validation names the field.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_agent.states import default_tier_names as tier_names  # noqa: F401  (the one definition)

SCENARIOS = ("regulation", "step", "ramp", "fairness")
LOAD_MODELS = ("constant", "water_heater", "ac", "mixed")
GOAL_MODES = ("auto", "now", "extrapolate", "preview")


class ScenarioError(ValueError):
    """Invalid scenario configuration (message names the field)."""


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: str = "regulation"
    devices: int = 10_000
    tiers: int = 3
    tier_shares: tuple[float, ...] | None = None    # default: black 0.1, the rest equal
    device_kw: str = "uniform:1:5"                  # uniform:LO:HI | lognormal:MEDIAN:SIGMA | CSV path
    load_model: str = "constant"
    signal: str | None = None                       # CSV; None = packaged PJM day
    start_s: float = 0.0                            # offset into the signal, s
    duration_s: float = 2400.0                      # scored part, s
    warmup_s: float = 300.0                         # unscored lead-in at the base goal, s
    base: float = 0.5                               # fraction of fleet demand
    amplitude: float = 0.15                         # fraction of fleet demand
    round_s: float = 2.0
    goal_mode: str = "auto"                         # now | extrapolate | preview | auto
    lag_rounds: int = 0
    report_loss: float = 0.0
    noise_std: float = 0.0
    sample_every: int = 1
    override_fraction: float = 0.0
    override_duration_s: float = 1800.0
    devices_per_gateway: int = 10
    alpha: float = 1.0
    fairness_horizon_s: float = 400.0
    max_switches_per_device_hour: float = 10.0
    flex_reserve_share: float = 0.5                 # control law ρ (docs/concepts.md)
    max_age_s: float = 10.0
    groups: int = 1                                 # control groups, one goal each (contiguous gateway blocks)
    group_offset_s: float = 0.0                     # group g's signal/schedule starts g · this later
    seed: int = 1

    def shares(self) -> tuple[float, ...]:
        if self.tier_shares is not None:
            return tuple(float(s) for s in self.tier_shares)
        if self.tiers == 1:
            return (1.0,)
        rest = 0.9 / (self.tiers - 1)
        return tuple([rest] * (self.tiers - 1) + [0.1])

    def validate(self) -> "ScenarioConfig":
        def bad(name: str, why: str):
            raise ScenarioError(f"{name.replace('_', '-')}: {why} (got {getattr(self, name)!r})")

        if self.scenario not in SCENARIOS:
            bad("scenario", f"must be one of {', '.join(SCENARIOS)}")
        if self.goal_mode not in GOAL_MODES:
            bad("goal_mode", f"must be one of {', '.join(GOAL_MODES)}")
        if self.load_model not in LOAD_MODELS:
            bad("load_model", f"must be one of {', '.join(LOAD_MODELS)}")
        for name in ("devices", "tiers", "devices_per_gateway", "sample_every", "groups"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        for name in ("duration_s", "round_s", "override_duration_s", "fairness_horizon_s", "max_age_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(name, "must be a positive number")
        for name in ("start_s", "warmup_s", "max_switches_per_device_hour", "noise_std", "group_offset_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(name, "must be a number >= 0")
        if not 0.0 <= self.base <= 1.0:
            bad("base", "must be a fraction in [0, 1]")
        if not (math.isfinite(self.amplitude) and 0.0 <= self.base + self.amplitude <= 1.0
                and 0.0 <= self.base - abs(self.amplitude)):
            bad("amplitude", "base ± amplitude must stay within [0, 1] of fleet demand")
        if self.lag_rounds < 0:
            bad("lag_rounds", "must be >= 0")
        if not 0.0 <= self.report_loss < 1.0:
            bad("report_loss", "must be in [0, 1)")
        if not 0.0 <= self.override_fraction < 1.0:
            bad("override_fraction", "must be in [0, 1)")
        if not 0.0 < self.alpha <= 1.0:
            bad("alpha", "must be in (0, 1]")
        if not 0.0 <= self.flex_reserve_share <= 1.0:
            bad("flex_reserve_share", "must be in [0, 1]")
        gateways = -(-int(self.devices) // int(self.devices_per_gateway))
        if self.groups > gateways:
            bad("groups", f"must be at most the number of gateways ({gateways}: a group is whole gateways)")
        shares = self.shares()
        if len(shares) != self.tiers:
            bad("tier_shares", f"needs {self.tiers} values (one per tier)")
        if any(s < 0 for s in shares) or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
            bad("tier_shares", "must be >= 0 and sum to 1")
        parse_device_kw(self.device_kw)  # raises ScenarioError naming device-kw
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> "ScenarioConfig":
        """Build from a TOML table / dict; keys with dashes or underscores; unknown keys refused."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ScenarioError(f"{where}: unknown key {key!r}")
            kwargs[name] = _coerce(name, value, where)
        return cls(**kwargs)

    def group_names(self) -> tuple[str, ...]:
        """Control group ids: "fleet" for one group, else g0 .. g{N-1}."""
        return ("fleet",) if self.groups == 1 else tuple(f"g{i}" for i in range(self.groups))

    def resolved_goal_mode(self) -> str:
        """auto: extrapolate a regulation signal (not known ahead); preview a step/ramp/constant
        schedule (a dispatch known one round before it applies)."""
        if self.goal_mode != "auto":
            return self.goal_mode
        return "extrapolate" if self.scenario == "regulation" else "preview"

    def with_overrides(self, **changes: Any) -> "ScenarioConfig":
        return replace(self, **{k: _coerce(k, v, "flag") for k, v in changes.items() if v is not None})


def _coerce(name: str, value: Any, where: str) -> Any:
    try:
        if name == "tier_shares":
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            return tuple(float(v) for v in value)
        if name in ("devices", "tiers", "lag_rounds", "sample_every", "devices_per_gateway", "seed", "groups"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        if name in ("scenario", "device_kw", "load_model", "signal", "goal_mode"):
            return None if value is None else str(value)
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: {name.replace('_', '-')}: cannot read {value!r} ({exc})") from None


def parse_device_kw(spec: str) -> tuple[str, tuple[float, ...]]:
    """('uniform', (lo, hi)) | ('lognormal', (median, sigma)) | ('csv', ()) after checking."""
    parts = str(spec).split(":")
    if parts[0] in ("uniform", "lognormal"):
        try:
            a, b = (float(x) for x in parts[1:])
        except ValueError:
            raise ScenarioError(f"device-kw: expected {parts[0]}:A:B with numbers, got {spec!r}") from None
        if parts[0] == "uniform" and not 0 <= a <= b:
            raise ScenarioError(f"device-kw: uniform needs 0 <= LO <= HI, got {spec!r}")
        if parts[0] == "lognormal" and not (a > 0 and b >= 0):
            raise ScenarioError(f"device-kw: lognormal needs MEDIAN > 0 and SIGMA >= 0, got {spec!r}")
        return parts[0], (a, b)
    if not Path(spec).is_file():
        raise ScenarioError(f"device-kw: not uniform:LO:HI, lognormal:MEDIAN:SIGMA or a CSV file: {spec!r}")
    return "csv", ()


def read_sizes_csv(path: str) -> np.ndarray:
    """Device sizes in kW: the `p_kw` column if there is a header with it, else the last column."""
    values: list[float] = []
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    col = -1
    if rows and "p_kw" in [c.strip() for c in rows[0]]:
        col = [c.strip() for c in rows[0]].index("p_kw")
    for n, row in enumerate(rows, start=1):
        try:
            v = float(row[col])
        except (ValueError, IndexError):
            if n == 1:
                continue   # header
            raise ScenarioError(f"device-kw: {path} row {n}: not a number: {row}") from None
        if not (math.isfinite(v) and v >= 0):
            raise ScenarioError(f"device-kw: {path} row {n}: kW must be finite and >= 0")
        values.append(v)
    if not values:
        raise ScenarioError(f"device-kw: {path} has no sizes")
    return np.asarray(values)


def device_sizes(cfg: ScenarioConfig, rng: np.random.Generator) -> np.ndarray:
    """Rated kW per device. A CSV with exactly `devices` rows is used as is; otherwise its
    sizes are sampled with replacement (empirical distribution)."""
    kind, args = parse_device_kw(cfg.device_kw)
    n = cfg.devices
    if kind == "uniform":
        return args[0] + (args[1] - args[0]) * rng.random(n)
    if kind == "lognormal":
        return args[0] * np.exp(args[1] * rng.standard_normal(n))
    sizes = read_sizes_csv(cfg.device_kw)
    return sizes.copy() if sizes.size == n else rng.choice(sizes, size=n, replace=True)
