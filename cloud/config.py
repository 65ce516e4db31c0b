"""Controller wiring a library owns: goal specs, key files, a ready `ControllerCore`.

The `colorgrid controller`, `demo`, `fleet` and `dispatch` commands, the benches and any program
embedding the controller build it the same way:

    keys = read_keys("dispatch.json", "dispatch")              # {key_id: key bytes}
    goal = parse_goal("dispatch:regulation:50%:15%", start_ms, keys)
    core = build_core(goal, "k1", key, start_ms, round_s=2.0, db="ctl.sqlite")

Goal specs (the `--goal` flag):

    constant:KW                 the same kW for every group
    file:PATH                   CSV `t_s, goal_kw[, group]`, piecewise constant (cloud.goals.FileGoal)
    regulation[:BASE:AMP]       base + amp · the packaged PJM RegD-type day; BASE and AMP both in kW,
                                or both in % of the group's demand (default 50%:15%)
    dispatch[:FALLBACK]         signed schedules on colorgrid/v1/dispatch/GROUP (needs keys);
                                FALLBACK (any spec above) where none is in force, default
                                "no shedding" (100 % of demand)

Every error is a `ConfigError` whose message names the flag (`--goal`, `--hmac-key-file`, ...).
"""
from __future__ import annotations

from cloud.aggregator import Aggregator
from cloud.control_law import ControlParams
from cloud.dispatch import DispatchGoal
from cloud.enrollment import Enrollment, EnrollmentError, GatewayPolicy
from cloud.goals import ConstantGoal, FileGoal, FractionOfDemand, GoalSchedule, RegulationGoal
from cloud.registry import open_registry
from cloud.rounds import ControllerCore
from edge_agent import keyfile

DEFAULT_REGULATION = "50%:15%"
MIN_ROUND_S = 0.05


class ConfigError(ValueError):
    """A controller setting that cannot be used (the message names the flag)."""


def read_key(path: str, key_id: str, flag: str = "--hmac-key-file") -> tuple[str, bytes]:
    """(key_id, key) from hex text or a JSON {key_id: hex} file (see edge_agent.keyfile)."""
    try:
        return keyfile.read_key(path, key_id, flag)
    except keyfile.KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def read_keys(path: str, key_id: str, flag: str = "--dispatch-key-file") -> dict[str, bytes]:
    """Every key of a JSON {key_id: hex} file, or {key_id: key} for hex text."""
    try:
        return keyfile.read_keys(path, key_id, flag)
    except keyfile.KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def _regulation(rest: str, start_ms: int) -> GoalSchedule:
    base, _, amp = (rest or DEFAULT_REGULATION).partition(":")
    amp = amp or DEFAULT_REGULATION.split(":")[1]
    if base.endswith("%") != amp.endswith("%"):
        raise ConfigError("--goal: regulation BASE and AMP must both be kW or both be %")
    if base.endswith("%"):
        return FractionOfDemand(RegulationGoal(float(base[:-1]) / 100, float(amp[:-1]) / 100,
                                               start_ms=start_ms))
    return RegulationGoal(float(base), float(amp), start_ms=start_ms)


def parse_goal(spec: str, start_ms: int, dispatch_keys: dict | None = None) -> GoalSchedule:
    """A `--goal` spec (module docstring) → a GoalSchedule; times count from `start_ms`."""
    kind, _, rest = spec.partition(":")
    if kind == "dispatch":
        if not dispatch_keys:
            raise ConfigError("--dispatch-key-file: required with --goal dispatch")
        fallback = parse_goal(rest, start_ms) if rest else FractionOfDemand(ConstantGoal(1.0))
        return DispatchGoal(dispatch_keys, fallback=fallback)
    try:
        if kind == "constant":
            return ConstantGoal(float(rest))
        if kind == "file":
            return FileGoal(rest, start_ms=start_ms)
        if kind == "regulation":
            return _regulation(rest, start_ms)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--goal: {spec!r}: {exc}") from None
    raise ConfigError(f"--goal: expected constant:KW, file:PATH, regulation[:BASE:AMP] or "
                      f"dispatch[:FALLBACK], got {spec!r}")


def build_core(goal: GoalSchedule, key_id: str, key: bytes, start_ms: int, controller_id: str = "ctl1",
               round_s: float = 2.0, db: str | None = None, sample_fraction: float = 1.0,
               ramp_pct_per_round: float = 100.0 * ControlParams.ramp_share_per_round,
               policy: GatewayPolicy | None = None, regions=None) -> ControllerCore:
    """A ControllerCore with the service's aggregator timing (stale after 1.5 rounds, reports
    carried 5 rounds, rebirth hold-off 5 rounds), its registry (`db`: SQLite path or None for
    memory), the recovery ramp (`ramp_pct_per_round` % of a group's demand per round after a
    restart or fail-safe; 0 = off; cloud.round_step), the gateway policy (`gateway_policy`:
    enrollment, kW limits; default: every id heard, 100 kW per device), the region mode
    (`regions`: a `cloud.region.RegionView` from `region_view`; the controller then takes signed
    region sums instead of gateway states) and, for a DispatchGoal, the dispatch inbox."""
    if not round_s >= MIN_ROUND_S:
        raise ConfigError(f"--round-s: must be >= {MIN_ROUND_S}")
    if not 0.0 <= ramp_pct_per_round <= 100.0:     # NaN fails too
        raise ConfigError(f"--ramp-pct-per-round: expected 0..100, got {ramp_pct_per_round!r}")
    round_ms = int(round(round_s * 1000))
    agg = Aggregator(stale_after_ms=int(1.5 * round_ms), max_carry_ms=5 * round_ms,
                     rebirth_holdoff_ms=5 * round_ms, sample_fraction=sample_fraction)
    inbox = goal if isinstance(goal, DispatchGoal) else None
    return ControllerCore(controller_id, goal, key_id, key, registry=open_registry(db), aggregator=agg,
                          params=ControlParams(round_s=round_s, ramp_share_per_round=ramp_pct_per_round / 100.0),
                          round_ms=round_ms, dispatches=inbox, policy=policy, regions=regions)


def region_view(regions_path: str, key_path: str, key_id: str = "region", round_s: float = 2.0):
    """The `--regions FILE` and `--region-key-file F` flags → a `cloud.region.RegionView`
    (ConfigError naming the flag). The aggregators' keys should not be the vector key: a
    compromised aggregator host must not be able to sign control vectors."""
    from cloud.region import RegionError, RegionMap, RegionView

    try:
        region_map = RegionMap.from_file(regions_path, "--regions")
    except RegionError as exc:
        raise ConfigError(str(exc)) from None
    keys = read_keys(key_path, key_id, "--region-key-file")
    return RegionView(region_map, keys, int(round(round_s * 1000)))


def gateway_policy(enrollment_path: str | None = None, max_device_kw: float | None = None,
                   max_gateway_kw: float | None = None) -> GatewayPolicy:
    """The `--enrollment FILE`, `--max-device-kw`, `--max-gateway-kw` flags → a GatewayPolicy
    (cloud.enrollment); errors raise ConfigError naming the flag."""
    try:
        enrollment = Enrollment.from_file(enrollment_path) if enrollment_path else None
    except EnrollmentError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return GatewayPolicy(enrollment, max_device_kw=max_device_kw, max_gateway_kw=max_gateway_kw)
    except EnrollmentError as exc:
        raise ConfigError("--" + str(exc).replace("_", "-", 2)) from None
