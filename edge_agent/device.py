"""Device contract, its fake, and two simple devices (constant and scalar thermostatic).

A device has a demand ``read_w(now_ms)`` (int watts it would draw if fully enabled) split across
k tiers by ``tier_shares`` (k fractions >= 0 summing to 1); the gateway reads every device
(input), steps the tier-slice machines, then tells each device how much of its demand is enabled
with ``write(enabled_w, now_ms)`` (output). Watts are ints so sums are exact; a tier's share of a
device's watts is ``split_w`` (largest-remainder rounding, parts per million).
"""

PPM = 1000000


class DeviceError(ValueError):
    """A device is misconfigured; the message names the field."""


def shares_to_ppm(shares, k: int, field: str = "tier_shares") -> list:
    """k fractions summing to 1 (within 1e-6) -> k ints in parts per million summing to 10**6."""
    if not isinstance(shares, (list, tuple)) or len(shares) != k:
        raise DeviceError("%s: expected %d fractions, got %r" % (field, k, shares))
    total = 0.0
    for i in range(k):
        x = shares[i]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or x < 0:
            raise DeviceError("%s[%d]: expected a number >= 0, got %r" % (field, i, x))
        total += x
    if abs(total - 1.0) > 1e-6:
        raise DeviceError("%s: fractions must sum to 1, got %r" % (field, total))
    raw = [int(shares[i] * PPM) for i in range(k)]
    return _largest_remainder(PPM, raw, [shares[i] * PPM - raw[i] for i in range(k)])


def _largest_remainder(total: int, base: list, remainders: list) -> list:
    """Add the units missing from sum(base) to reach total, largest remainder first.

    Ties go to the higher index (the tier shed last keeps the extra unit)."""
    out = list(base)
    missing = total - sum(out)
    order = sorted(range(len(out)), key=lambda i: (-remainders[i], -i))
    for n in range(missing):
        out[order[n % len(out)]] += 1
    return out


def split_w(total_w: int, shares_ppm: list) -> list:
    """Split int watts across tiers by parts-per-million shares; the parts sum exactly to total_w.

    Tier i gets floor(total_w * ppm_i / 10**6) plus one watt for the largest remainders."""
    base = [total_w * q // PPM for q in shares_ppm]
    rem = [total_w * q - base[i] * PPM for i, q in enumerate(shares_ppm)]
    return _largest_remainder(total_w, base, rem)


class Device:
    """Contract of a device seen by a gateway (MicroPython has no typing.Protocol: subclass this).

    Attributes: ``device_id`` (str), ``tier_shares`` (k floats >= 0 summing to 1), ``kind`` (str).
    """

    device_id = ""
    tier_shares = ()
    kind = "device"

    def read_w(self, now_ms: int) -> int:
        """Demand in int watts at ``now_ms`` if every tier-slice were enabled (input step)."""
        raise NotImplementedError

    def write(self, enabled_w: int, now_ms: int) -> None:
        """Output step: ``enabled_w`` int watts of the demand are enabled from ``now_ms`` on."""
        raise NotImplementedError

    def info(self) -> dict:
        """Inventory entry (birth message): id, kind, tier shares."""
        return {"device_id": self.device_id, "kind": self.kind, "tier_shares": list(self.tier_shares)}


class FakeDevice(Device):
    """Test device: demand from a list (one value per read, the last one repeats) or a constant;
    records every ``write`` as (now_ms, enabled_w) in ``writes``; ``fail_reads`` makes reads raise."""

    kind = "fake"

    def __init__(self, device_id, tier_shares, demand_w=1000):
        self.device_id = device_id
        self.tier_shares = tuple(tier_shares)
        if isinstance(demand_w, (list, tuple)):
            self._demands = list(demand_w)
        else:
            self._demands = [demand_w]
        self._reads = 0
        self.writes = []
        self.fail_reads = False

    def read_w(self, now_ms):
        if self.fail_reads:
            raise OSError("fake device %s: read failed" % self.device_id)
        i = self._reads if self._reads < len(self._demands) else len(self._demands) - 1
        self._reads += 1
        return self._demands[i]

    def write(self, enabled_w, now_ms):
        self.writes.append((now_ms, enabled_w))


class ConstantDevice(Device):
    """A constant load: demand ``rated_w`` whenever read (e.g. a pool pump, an EV charger)."""

    kind = "constant"

    def __init__(self, device_id, rated_w, tier_shares):
        if isinstance(rated_w, bool) or not isinstance(rated_w, int) or rated_w < 0:
            raise DeviceError("rated_w: expected an int >= 0, got %r" % (rated_w,))
        self.device_id = device_id
        self.rated_w = rated_w
        self.tier_shares = tuple(tier_shares)
        self.enabled_w = rated_w

    def read_w(self, now_ms):
        return self.rated_w

    def write(self, enabled_w, now_ms):
        self.enabled_w = enabled_w

    def info(self):
        d = Device.info(self)
        d["rated_w"] = self.rated_w
        return d


class ThermostaticDevice(Device):
    """Scalar thermal load (water heater with mode "heat", air conditioner with mode "cool").

    Temperature theta in integer milli-degC, energy in integer mJ (exact, runtime-independent):
        C dtheta/dt = s * cop * P_served - UA (theta - theta_amb),  s = +1 heat, -1 cool,
    integrated by explicit Euler over each interval between writes with the served power of the
    previous write held; the integer remainder of the energy is carried to the next interval.
    Thermostat with hysteresis: heat calls when theta < set - band/2 and stops when
    theta > set + band/2 (mirrored for cool). Demand = rated_w while calling, else 0.
    Units: rated_w W, ua_w_per_c W/degC, c_j_per_c J/degC, temperatures degC, cop dimensionless.
    """

    kind = "thermostatic"

    def __init__(self, device_id, rated_w, tier_shares, setpoint_c=55.0, deadband_c=4.0,
                 ambient_c=20.0, ua_w_per_c=3.0, c_j_per_c=837000, theta0_c=None, mode="heat",
                 cop=1.0):
        if mode not in ("heat", "cool"):
            raise DeviceError("mode: expected 'heat' or 'cool', got %r" % (mode,))
        if isinstance(rated_w, bool) or not isinstance(rated_w, int) or rated_w < 0:
            raise DeviceError("rated_w: expected an int >= 0, got %r" % (rated_w,))
        if not isinstance(c_j_per_c, int) or c_j_per_c <= 0:
            raise DeviceError("c_j_per_c: expected an int > 0, got %r" % (c_j_per_c,))
        if deadband_c <= 0:
            raise DeviceError("deadband_c: expected > 0, got %r" % (deadband_c,))
        self.device_id = device_id
        self.rated_w = rated_w
        self.tier_shares = tuple(tier_shares)
        self.mode = mode
        self.sign = 1 if mode == "heat" else -1
        self.set_mc = int(round(setpoint_c * 1000))
        self.half_band_mc = int(round(deadband_c * 500))
        self.amb_mc = int(round(ambient_c * 1000))
        self.ua_mw_per_c = int(round(ua_w_per_c * 1000))
        self.c_j_per_c = c_j_per_c
        self.cop_pct = int(round(cop * 100))
        self.theta_mc = self.set_mc if theta0_c is None else int(round(theta0_c * 1000))
        self.calling = self._too_far(self.theta_mc)
        self.served_w = 0
        self._last_ms = None
        self._residual_mj = 0

    def _too_far(self, theta_mc):
        return self.sign * (self.set_mc - theta_mc) > 0

    def _update_thermostat(self):
        gap_mc = self.sign * (self.set_mc - self.theta_mc)  # > 0: needs the device
        if gap_mc > self.half_band_mc:
            self.calling = True
        elif gap_mc < -self.half_band_mc:
            self.calling = False

    def _integrate(self, now_ms):
        if self._last_ms is None:
            self._last_ms = now_ms
            return
        if now_ms <= self._last_ms:
            return
        dt_ms = now_ms - self._last_ms
        self._last_ms = now_ms
        gain_mj = self.sign * self.served_w * dt_ms * self.cop_pct // 100  # W*ms = mJ
        loss_mj = self.ua_mw_per_c * (self.theta_mc - self.amb_mc) * dt_ms // PPM
        total_mj = gain_mj - loss_mj + self._residual_mj
        d_mc = total_mj // self.c_j_per_c  # mJ / (J/degC) = m degC
        self._residual_mj = total_mj - d_mc * self.c_j_per_c
        self.theta_mc += d_mc

    @property
    def theta_c(self):
        return self.theta_mc / 1000

    def read_w(self, now_ms):
        self._integrate(now_ms)
        self._update_thermostat()
        return self.rated_w if self.calling else 0

    def write(self, enabled_w, now_ms):
        self._integrate(now_ms)
        self.served_w = enabled_w

    def info(self):
        d = Device.info(self)
        d["rated_w"] = self.rated_w
        d["mode"] = self.mode
        return d
