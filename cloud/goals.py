"""Goal schedules: where the controller's goal g(t) (total enabled kW wanted per group) comes from.

The contract is `GoalSchedule`: two methods, and every goal source implements it — a constant, a
CSV file, a regulation signal, a step or ramp, a fraction of the group's demand, a dispatched
schedule (`cloud.dispatch.DispatchGoal`), and later the VPP and OpenADR events:

    goal_kw(group, t_ms, demand_kw=None) -> float   total enabled kW wanted at UTC epoch ms t_ms;
                                                    demand_kw = the group's current total demand
                                                    (Σ of the four states), given by the control
                                                    round to goals expressed relative to it
    source(group, t_ms) -> str                      where that value comes from: one of
                                                    GOAL_SOURCES ("schedule" by default)

`evaluate(schedule, group, t_ms, demand_kw)` asks both at once and returns a `GoalValue`; the
control round uses only that, so it never inspects concrete classes. `FakeGoal` records the
calls for tests.

Times inside a schedule are seconds from `start_ms` (the schedule's t = 0, UTC epoch ms).
"""
from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

SIGNAL_ROUND_S = 2.0   # spacing of the packaged regulation signal, s

SOURCE_SCHEDULE = "schedule"   # a configured schedule (constant, file, regulation, fraction, ...)
SOURCE_DISPATCH = "dispatch"   # a signed dispatched schedule in force (VPP, market, operator)
SOURCE_FALLBACK = "fallback"   # a dispatch-driven goal with no dispatch in force: its fallback
SOURCE_VPP = "vpp"             # reserved: cleared VPP dispatch evaluated in process
SOURCE_OPENADR = "openadr"     # reserved: an OpenADR 2.0b event
GOAL_SOURCES = (SOURCE_SCHEDULE, SOURCE_DISPATCH, SOURCE_FALLBACK, SOURCE_VPP, SOURCE_OPENADR)


class GoalError(ValueError):
    """A goal schedule that cannot be built or evaluated (message names the field)."""


@runtime_checkable
class GoalSchedule(Protocol):
    """The goal contract (see the module docstring). Subclass it to inherit `source`."""

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        """Total enabled kW wanted for `group` at UTC epoch ms `t_ms`."""
        ...

    def source(self, group: str, t_ms: int) -> str:
        """Where the value at (group, t_ms) comes from (one of GOAL_SOURCES)."""
        return SOURCE_SCHEDULE


@dataclass(frozen=True)
class GoalValue:
    """One evaluated goal: kW wanted and where it came from."""

    kw: float
    source: str


def evaluate(schedule: GoalSchedule, group: str, t_ms: int, demand_kw: float | None = None) -> GoalValue:
    """The goal of `group` at `t_ms` with its source; GoalError if it is not a finite number."""
    source = schedule.source(group, t_ms)
    kw = float(schedule.goal_kw(group, t_ms, demand_kw))
    if not math.isfinite(kw):
        raise GoalError(f"group {group!r}: goal is not finite ({kw!r}) at {t_ms}")
    return GoalValue(kw, source)


def _finite(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise GoalError(f"{name} must be finite, got {value!r}")
    return v


def _elapsed_s(t_ms: int, start_ms: int) -> float:
    return (int(t_ms) - int(start_ms)) / 1000.0


class ConstantGoal(GoalSchedule):
    """The same kW at all times; one value for every group or a mapping group -> kW."""

    def __init__(self, kw: float | Mapping[str, float]):
        if isinstance(kw, Mapping):
            self._per_group = {str(g): _finite(v, f"kw[{g}]") for g, v in kw.items()}
            self._all = None
        else:
            self._per_group = {}
            self._all = _finite(kw, "kw")

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        if self._all is not None:
            return self._all
        if group not in self._per_group:
            raise GoalError(f"group {group!r} has no goal (known: {sorted(self._per_group)})")
        return self._per_group[group]


class StepGoal(GoalSchedule):
    """`before_kw` until `step_s` after `start_ms`, `after_kw` from then on."""

    def __init__(self, before_kw: float, after_kw: float, step_s: float, start_ms: int = 0):
        self.before_kw = _finite(before_kw, "before_kw")
        self.after_kw = _finite(after_kw, "after_kw")
        self.step_s = _finite(step_s, "step_s")
        self.start_ms = int(start_ms)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.after_kw if _elapsed_s(t_ms, self.start_ms) >= self.step_s else self.before_kw


class RampGoal(GoalSchedule):
    """`from_kw` until `ramp_start_s`, linear to `to_kw` at `ramp_end_s`, then held."""

    def __init__(self, from_kw: float, to_kw: float, ramp_start_s: float, ramp_end_s: float,
                 start_ms: int = 0):
        self.from_kw = _finite(from_kw, "from_kw")
        self.to_kw = _finite(to_kw, "to_kw")
        self.ramp_start_s = _finite(ramp_start_s, "ramp_start_s")
        self.ramp_end_s = _finite(ramp_end_s, "ramp_end_s")
        if self.ramp_end_s <= self.ramp_start_s:
            raise GoalError("ramp_end_s must be after ramp_start_s")
        self.start_ms = int(start_ms)

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        s = _elapsed_s(t_ms, self.start_ms)
        frac = min(max((s - self.ramp_start_s) / (self.ramp_end_s - self.ramp_start_s), 0.0), 1.0)
        return self.from_kw + frac * (self.to_kw - self.from_kw)


class FileGoal(GoalSchedule):
    """Piecewise-constant goal from a CSV with columns `t_s, goal_kw` (optional `group`).

    The value at time s is the row with the largest t_s <= s (before the first row: the first row).
    """

    def __init__(self, path: str | Path, start_ms: int = 0):
        self.start_ms = int(start_ms)
        self._series: dict[str | None, tuple[list[float], list[float]]] = {}
        rows: dict[str | None, list[tuple[float, float]]] = {}
        with Path(path).open(newline="") as fh:
            reader = csv.DictReader(row for row in fh if not row.lstrip().startswith("#"))
            fields = set(reader.fieldnames or [])
            if not {"t_s", "goal_kw"} <= fields:
                raise GoalError(f"{path}: needs columns t_s and goal_kw, found {sorted(fields)}")
            for n, row in enumerate(reader, start=2):
                try:
                    t_s, kw = float(row["t_s"]), float(row["goal_kw"])
                except (TypeError, ValueError):
                    raise GoalError(f"{path} line {n}: t_s/goal_kw not numbers: {row}") from None
                _finite(t_s, f"{path} line {n} t_s")
                _finite(kw, f"{path} line {n} goal_kw")
                rows.setdefault(row.get("group") or None, []).append((t_s, kw))
        if not rows:
            raise GoalError(f"{path}: no rows")
        for group, pts in rows.items():
            pts.sort()
            self._series[group] = ([p[0] for p in pts], [p[1] for p in pts])

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        key = group if group in self._series else None
        if key not in self._series:
            raise GoalError(f"group {group!r} not in goal file (known: {sorted(map(str, self._series))})")
        times, values = self._series[key]
        i = bisect.bisect_right(times, _elapsed_s(t_ms, self.start_ms)) - 1
        return values[max(i, 0)]


def load_signal(path: str | Path | None = None) -> np.ndarray:
    """Read a regulation signal: one value per line (or the last column of a CSV), `#` comments
    and a non-numeric header line allowed. Default: the packaged PJM RegD-type day (2-s spacing)."""
    if path is None:
        text = resources.files("cloud").joinpath("data/regulation_signal_2s.csv").read_text()
        where = "packaged regulation_signal_2s.csv"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise GoalError(f"signal file {path}: {exc.strerror or exc}") from None
        where = str(path)
    values: list[float] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        field = line.split(",")[-1].strip()
        try:
            v = float(field)
        except ValueError:
            if not values:   # a header line
                continue
            raise GoalError(f"{where} line {n}: not a number: {field!r}") from None
        if not math.isfinite(v):
            raise GoalError(f"{where} line {n}: non-finite value")
        values.append(v)
    if not values:
        raise GoalError(f"{where}: no values")
    return np.asarray(values, dtype=float)


class RegulationGoal(GoalSchedule):
    """goal = base_kw + amplitude_kw · signal(t), the signal sampled every `signal_step_s`
    (held in between), starting at sample `start_s / signal_step_s`; the day wraps around."""

    def __init__(self, base_kw: float, amplitude_kw: float, signal: Sequence[float] | None = None,
                 start_ms: int = 0, start_s: float = 0.0, signal_step_s: float = SIGNAL_ROUND_S):
        self.base_kw = _finite(base_kw, "base_kw")
        self.amplitude_kw = _finite(amplitude_kw, "amplitude_kw")
        self.signal = load_signal() if signal is None else np.asarray(signal, dtype=float)
        if self.signal.ndim != 1 or self.signal.size == 0 or not np.all(np.isfinite(self.signal)):
            raise GoalError("signal must be a non-empty 1-D array of finite values")
        self.start_ms = int(start_ms)
        self.start_s = _finite(start_s, "start_s")
        self.signal_step_s = _finite(signal_step_s, "signal_step_s")
        if self.signal_step_s <= 0:
            raise GoalError("signal_step_s must be > 0")

    def signal_at(self, t_ms: int) -> float:
        s = self.start_s + _elapsed_s(t_ms, self.start_ms)
        idx = int(math.floor(s / self.signal_step_s + 1e-9)) % self.signal.size
        return float(self.signal[idx])

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self.base_kw + self.amplitude_kw * self.signal_at(t_ms)


class PerGroupGoal(GoalSchedule):
    """One schedule per group (e.g. per feeder location): `schedules[group]`; GoalError for a
    group without one. Its source is that schedule's."""

    def __init__(self, schedules: Mapping[str, GoalSchedule]):
        if not schedules:
            raise GoalError("schedules: at least one group is needed")
        self.schedules = {str(g): s for g, s in schedules.items()}

    def _of(self, group: str) -> GoalSchedule:
        try:
            return self.schedules[group]
        except KeyError:
            raise GoalError(f"group {group!r} has no goal (known: {sorted(self.schedules)})") from None

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        return self._of(group).goal_kw(group, t_ms, demand_kw)

    def source(self, group: str, t_ms: int) -> str:
        return self._of(group).source(group, t_ms)


class FakeGoal(GoalSchedule):
    """Test double: returns `values[group]` (or `default`) and records every (group, t_ms) asked."""

    def __init__(self, default: float = 0.0, values: Mapping[str, float] | None = None):
        self.default = float(default)
        self.values = dict(values or {})
        self.calls: list[tuple[str, int]] = []

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        self.calls.append((group, int(t_ms)))
        return float(self.values.get(group, self.default))


class ExtrapolatedGoal(GoalSchedule):
    """Causal one-step-ahead prediction of another schedule, for the round being controlled.

    goal_kw(group, t) = g(t) + (lead_ms / step_ms) · (g(t) - g(t - step_ms)): only the present and
    past values of the wrapped schedule are read. The control vector computed at t applies at
    t + lead; for a fast regulation signal this halves the error of holding g(t) (the RMS of the
    second difference of the PJM RegD day is ~0.9 % of its range per 2 s against ~2.5 % for the
    first difference). Not for steps: it would overshoot by one step for one round.
    """

    def __init__(self, schedule: GoalSchedule, lead_ms: int, step_ms: int,
                 lo_kw: float | None = None, hi_kw: float | None = None):
        if step_ms <= 0 or lead_ms < 0:
            raise GoalError("step_ms must be > 0 and lead_ms >= 0")
        self.schedule, self.lead_ms, self.step_ms = schedule, int(lead_ms), int(step_ms)
        self.lo_kw = -math.inf if lo_kw is None else _finite(lo_kw, "lo_kw")
        self.hi_kw = math.inf if hi_kw is None else _finite(hi_kw, "hi_kw")
        if self.lo_kw > self.hi_kw:
            raise GoalError("lo_kw must be <= hi_kw")

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        now = self.schedule.goal_kw(group, t_ms, demand_kw)
        before = self.schedule.goal_kw(group, t_ms - self.step_ms, demand_kw)
        return min(max(now + (self.lead_ms / self.step_ms) * (now - before), self.lo_kw), self.hi_kw)

    def source(self, group: str, t_ms: int) -> str:
        return self.schedule.source(group, t_ms)


class FractionOfDemand(GoalSchedule):
    """A goal given as a fraction of the group's current total demand: g = fraction(t) · demand_kw,
    where `inner` is any GoalSchedule whose value is a fraction (e.g. a RegulationGoal(base=0.5,
    amplitude=0.15)). The control round passes the group's estimated demand (Σ of the four states)."""

    def __init__(self, inner: GoalSchedule) -> None:
        self.inner = inner

    def goal_kw(self, group: str, t_ms: int, demand_kw: float | None = None) -> float:
        if demand_kw is None:
            raise GoalError(f"group {group!r}: a fraction-of-demand goal needs the group's demand_kw")
        return float(self.inner.goal_kw(group, t_ms)) * _finite(demand_kw, "demand_kw")

    def source(self, group: str, t_ms: int) -> str:
        return self.inner.source(group, t_ms)
