"""GatewayCore: the devices of one gateway, the control vector in force, local safety, aggregation.

Time is passed in (``now_ms``, int ms) - the core never reads a clock, so simulations can run
faster than real time. One round, ``step(now_ms)`` (input -> process -> output):

1. input: read every device's demand (int W) and split it across its tier-slices;
2. fail-safe: if no valid control vector was applied within ``fail_safe_s`` (or none yet), the
   vector in force is p_on = 1, p_off = 0 for every tier;
3. timers, then switching, in ``SliceMachines`` (see machine.py for the maths);
4. output: tell each device its enabled watts, and rebuild the per-tier aggregate.

Safety invariants enforced here whatever a message says: p in [0, 1] (clamped); black tier
p_off = 0; refractory timers honoured; fail-safe re-enable; a customer override forces a device on
(all its slices ER, not switchable) until it ends. Bad device readings never stop the round: the
last good demand is kept and ``read_errors`` counts the failure.
"""

from edge_agent.aggregate import Aggregate
from edge_agent.device import shares_to_ppm, split_w
from edge_agent.machine import SliceMachines, probability_to_q
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.states import ENABLED


class ControlError(ValueError):
    """A control vector is malformed; the message names the field. Nothing was changed."""


class UnknownDevice(ValueError):
    """A device id is not one of this gateway's devices."""


def _check_time(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s: expected int epoch ms, got %r" % (name, value))


def _clean_vector(name: str, values, k: int) -> list:
    """Validate a probability vector of length k; returns floats clamped to [0, 1]."""
    if not isinstance(values, (list, tuple)):
        raise ControlError("%s: expected a list of %d probabilities, got %r" % (name, k, values))
    if len(values) != k:
        raise ControlError("%s: expected %d values (one per tier), got %d" % (name, k, len(values)))
    out = []
    for i in range(k):
        x = values[i]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
            raise ControlError("%s[%d]: expected a number in [0, 1], got %r" % (name, i, x))
        out.append(0.0 if x < 0 else (1.0 if x > 1 else float(x)))
    return out


class GatewayCore:
    """Tier-slice machines of one gateway's devices (see module docstring).

    ``devices``: objects following ``device.Device`` with unique ``device_id``; they are kept
    sorted by id and their slices numbered in that order (devices, then tiers 0..k-1; a tier with
    a zero share has no slice). ``params``: ``AgentParams`` (defaults when None). ``seed``: PRNG seed.
    """

    def __init__(self, gateway_id: str, devices, params=None, seed: int = 1) -> None:
        self.gateway_id = gateway_id
        self.params = AgentParams() if params is None else params
        k = self.params.k
        self.k = k
        by_id = {}
        for d in devices:
            if d.device_id in by_id:
                raise ValueError("device_id: duplicate %r" % (d.device_id,))
            by_id[d.device_id] = d
        self.devices = [by_id[key] for key in sorted(by_id)]
        self._index = {}
        self._shares_ppm = []
        self._slices_of = []
        self.slice_device = []
        tiers: list = []
        for n, d in enumerate(self.devices):
            self._index[d.device_id] = n
            ppm = shares_to_ppm(d.tier_shares, k, "%s.tier_shares" % d.device_id)
            self._shares_ppm.append(ppm)
            mine = []
            for i in range(k):
                if ppm[i] > 0:
                    mine.append(len(tiers))
                    tiers.append(i)
                    self.slice_device.append(n)
            self._slices_of.append(mine)
        self.slice_tier = tiers
        self.slice_w = [0] * len(tiers)
        self._demand_w = [0] * len(self.devices)
        self.prng = Prng(seed)
        self.machines = SliceMachines(tiers, k - 1, self.params, self.prng)
        self.p_on = [1.0] * k
        self.p_off = [0.0] * k
        self._q_on = [probability_to_q(1.0)] * k
        self._q_off = [0] * k
        self.last_valid_ms = None  # type: int | None
        self.failsafe_active = True
        self.now_ms = None  # type: int | None
        self.rounds = 0
        self.read_errors = 0
        self.last_error = ""
        self.last_switches = (0, 0)
        self._aggregate = Aggregate(k)
        self._rebuild_aggregate()

    # -- control -----------------------------------------------------------------------------
    def apply_control(self, p_on, p_off, now_ms: int) -> None:
        """Put a validated control vector in force from now on and record ``last_valid_ms``.

        Values are clamped to [0, 1] and the black tier's p_off is forced to 0. A wrong length,
        a non-number or NaN raises ControlError naming the field, and nothing changes."""
        _check_time("now_ms", now_ms)
        k = self.k
        on = _clean_vector("p_on", p_on, k)
        off = _clean_vector("p_off", p_off, k)
        off[k - 1] = 0.0
        self.p_on = on
        self.p_off = off
        self._q_on = [probability_to_q(p) for p in on]
        self._q_off = [probability_to_q(p) for p in off]
        self.last_valid_ms = now_ms

    def is_failsafe(self, now_ms: int) -> bool:
        """True when no valid control vector was applied within fail_safe_s before now_ms."""
        if self.last_valid_ms is None:
            return True
        return now_ms - self.last_valid_ms >= self.params.fail_safe_ms

    def control_in_force(self, now_ms: int) -> tuple:
        """(p_on, p_off, failsafe) that a round at now_ms uses."""
        if self.is_failsafe(now_ms):
            return [1.0] * self.k, [0.0] * self.k, True
        return list(self.p_on), list(self.p_off), False

    # -- override ----------------------------------------------------------------------------
    def override(self, device_id: str, until_ms: int) -> None:
        """Customer override: device forced on now, all its slices ER (held) until ``until_ms``.

        A later call replaces the end time; ``until_ms`` <= the next round's time ends it there."""
        _check_time("until_ms", until_ms)
        if device_id not in self._index:
            raise UnknownDevice("device_id: %r is not on gateway %r" % (device_id, self.gateway_id))
        for j in self._slices_of[self._index[device_id]]:
            self.machines.hold(j, until_ms)
        self._rebuild_aggregate()

    def overridden(self) -> list:
        """Sorted ids of devices with an override in force."""
        held = self.machines.held
        return [d.device_id for n, d in enumerate(self.devices)
                if any(held[j] for j in self._slices_of[n])]

    # -- the round ---------------------------------------------------------------------------
    def step(self, now_ms: int) -> Aggregate:
        """One round at now_ms: input, fail-safe check, timers, switching, output. Returns the
        aggregate. ``now_ms`` must not go backwards (ValueError naming now_ms)."""
        _check_time("now_ms", now_ms)
        if self.now_ms is not None and now_ms < self.now_ms:
            raise ValueError("now_ms: %d is before the previous round %d" % (now_ms, self.now_ms))
        self._read_devices(now_ms)
        self.failsafe_active = self.is_failsafe(now_ms)
        if self.failsafe_active:
            q_on, q_off = [probability_to_q(1.0)] * self.k, [0] * self.k
        else:
            q_on, q_off = self._q_on, self._q_off
        self.machines.step_timers(now_ms)
        self.last_switches = self.machines.step_switching(q_on, q_off, now_ms)
        self.now_ms = now_ms
        self.rounds += 1
        self._write_devices(now_ms)
        self._rebuild_aggregate()
        return self._aggregate

    def _read_devices(self, now_ms):
        for n, d in enumerate(self.devices):
            try:
                w = d.read_w(now_ms)
                if isinstance(w, bool) or not isinstance(w, int) or w < 0:
                    raise ValueError("read_w: expected int watts >= 0, got %r" % (w,))
                self._demand_w[n] = w
            except Exception as e:  # a bad device never stops the round
                self.read_errors += 1
                self.last_error = "%s: %s" % (d.device_id, e)
            parts = split_w(self._demand_w[n], self._shares_ppm[n])
            for j in self._slices_of[n]:
                self.slice_w[j] = parts[self.slice_tier[j]]

    def _write_devices(self, now_ms):
        state = self.machines.state
        for n, d in enumerate(self.devices):
            enabled = 0
            for j in self._slices_of[n]:
                if ENABLED[state[j]]:
                    enabled += self.slice_w[j]
            try:
                d.write(enabled, now_ms)
            except Exception as e:
                self.last_error = "%s: %s" % (d.device_id, e)

    # -- output ------------------------------------------------------------------------------
    def _rebuild_aggregate(self):
        agg = Aggregate(self.k, self.now_ms)
        state = self.machines.state
        for j in range(len(state)):
            agg.add(self.slice_tier[j], state[j], self.slice_w[j])
        self._aggregate = agg

    def aggregate(self) -> Aggregate:
        """Per-tier totals after the last round (or override): Aggregate with w/kw/count[tier][state]."""
        return self._aggregate

    def slice_table(self) -> list:
        """One tuple per slice, in slice order: (device_id, tier, state, timer_end_ms, held, w)."""
        m = self.machines
        return [(self.devices[self.slice_device[j]].device_id, self.slice_tier[j], m.state[j],
                 m.timer_end_ms[j], m.held[j], self.slice_w[j]) for j in range(len(m.state))]

    def inventory(self) -> dict:
        """Birth-message content: gateway id, parameters, device list (sorted by id)."""
        return {
            "gateway_id": self.gateway_id,
            "params": self.params.to_dict(),
            "devices": [d.info() for d in self.devices],
        }
