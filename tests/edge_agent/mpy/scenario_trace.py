"""A scripted gateway scenario whose full state trace must be bit-identical on CPython and
MicroPython (issue 2, item 4d).

Fixed seed, one gateway with four devices (two constant loads, a water heater, an air
conditioner; k = 3, short timers so that much happens in few rounds), a scripted sequence of
control vectors, a malformed vector (rejected), two customer overrides and a silent period longer
than fail_safe_s. Every round prints one line of integers (round, t, fail-safe flag, switches,
each slice's state and timer end, each device's temperature, per-tier watts and counts); the
last line is an FNV-1a 32-bit digest of all previous lines.

    python tests/edge_agent/mpy/scenario_trace.py [SEED]
    node tools/mpy_wasm/run.mjs tests/edge_agent/mpy/scenario_trace.py [SEED]
"""
import sys

from edge_agent.device import ConstantDevice, ThermostaticDevice
from edge_agent.gateway import ControlError, GatewayCore
from edge_agent.params import AgentParams

ROUND_MS = 2000
N_ROUNDS = 120
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a32(h, text):
    for b in text.encode():
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFF
    return h


def make_core(seed):
    params = AgentParams(k=3, t_ef_s=10, t_ev_s=6, t_df_s=8, t_dv_s=5, fail_safe_s=20)
    devices = [
        ConstantDevice("pump-1", 1500, (0.6, 0.4, 0.0)),
        ConstantDevice("ev-1", 7200, (0.5, 0.3, 0.2)),
        ThermostaticDevice("wh-1", 4500, (0.7, 0.0, 0.3), setpoint_c=55.0, deadband_c=0.2,
                           theta0_c=54.95, c_j_per_c=83700),
        ThermostaticDevice("ac-1", 3000, (0.2, 0.5, 0.3), setpoint_c=24.0, deadband_c=0.4,
                           ambient_c=32.0, ua_w_per_c=150.0, c_j_per_c=200000, theta0_c=24.1,
                           mode="cool", cop=3.0),
    ]
    return GatewayCore("gw-trace", devices, params=params, seed=seed)


def control_for_round(r):
    """Scripted control: (p_on, p_off) or None (no message this round)."""
    if r < 30:
        return [0.10, 0.25, 0.40], [0.30, 0.20, 0.90]  # black p_off must be ignored
    if r < 45:
        return [0.60, 0.50, 0.50], [0.05, 0.05, 0.00]
    if r < 70:
        return None  # silence: fail-safe after 20 s (10 rounds)
    if r < 95:
        return [0.0, 0.1, 1.0], [1.0, 0.7, 1.0]
    return [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]


def run(seed):
    core = make_core(seed)
    lines = []
    for r in range(N_ROUNDS):
        now_ms = 1700000000000 + r * ROUND_MS
        if r == 50:
            try:
                core.apply_control([0.5, 0.5], [0.1, 0.1, 0.1], now_ms)
            except ControlError as e:
                lines.append("rejected %s" % e)
        vector = control_for_round(r)
        if vector is not None:
            core.apply_control(vector[0], vector[1], now_ms)
        if r == 20:
            core.override("wh-1", now_ms + 30000)
        if r == 80:
            core.override("ev-1", now_ms + 11000)
        agg = core.step(now_ms)
        fields = [r, now_ms - 1700000000000, int(core.failsafe_active),
                  core.last_switches[0], core.last_switches[1]]
        for row in core.slice_table():
            fields.append(row[2])
            fields.append(row[3] - 1700000000000 if row[3] else 0)
            fields.append(int(row[4]))
            fields.append(row[5])
        for d in core.devices:
            fields.append(getattr(d, "theta_mc", 0))
        for i in range(core.k):
            fields.extend(agg.w[i])
            fields.extend(agg.count[i])
        lines.append(" ".join(str(x) for x in fields))
    lines.append("prng %d %d %d %d" % core.prng.getstate())
    h = FNV_OFFSET
    for line in lines:
        h = fnv1a32(h, line + "\n")
    lines.append("digest %08x" % h)
    return lines


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    for line in run(seed):
        print(line)


if __name__ == "__main__":
    main()
