"""The vectorized fleet follows the same machine as edge_agent.GatewayCore (pinned semantics).

Same small fleet (60 constant devices, 3 tiers), same control sequence. GatewayCore runs over
several seeds; the vector fleet runs many replicas of the fleet at once. Compared:
* per-tier, per-state kW averaged over the rounds of each control phase (within statistical bounds);
* the refractory duration distribution (in rounds) of both, against each other and against the
  analytical kernel P(d) = |((d-1)r, dr] ∩ [T, T+V]| / V.
"""
import numpy as np

from cloud.estimator import expiry_kernel
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from firmware_sim.vector_fleet import VectorFleet

SHARES = (0.4, 0.4, 0.2)
N_DEV = 60
RATED_W = [1000 + 50 * (i % 21) for i in range(N_DEV)]
ROUND_MS = 2000
N_ROUNDS = 260


def control(m: int):
    """Round m's vector: a shed phase, a recovery phase, then steady cycling."""
    if m < 40:
        return [0.0, 0.0, 1.0], [0.08, 0.03, 0.5]          # black p_off must be ignored
    if m < 120:
        return [0.05, 0.2, 1.0], [0.0, 0.0, 0.0]
    return [0.03, 0.03, 1.0], [0.03, 0.03, 0.0]


PHASES = [(0, 40), (40, 120), (120, N_ROUNDS)]


def durations_from_trace(states: np.ndarray) -> np.ndarray:
    """Refractory durations in rounds: from the round a slice entered ER/DR by switching to the
    round it was flexible again. A slice may leave refractory and switch again in the same round
    (ER -> EF -> DR is seen as ER then DR): that ends one period and starts the next.
    Periods starting in the last 92 rounds are dropped (they could be cut off: censoring).
    states: (rounds, slices)."""
    out = []
    last_start = states.shape[0] - 92
    for j in range(states.shape[1]):
        s = states[:, j]
        start = None
        for m in range(1, s.size):
            if s[m] % 2 == 1 and s[m - 1] % 2 == 0:
                start = m
            elif s[m] % 2 == 1 and s[m - 1] % 2 == 1 and s[m] != s[m - 1]:
                if start is not None and start <= last_start:
                    out.append(m - start)
                start = m
            elif start is not None and s[m] % 2 == 0 and s[m - 1] % 2 == 1:
                if start <= last_start:
                    out.append(m - start)
                start = None
    return np.asarray(out)


def run_core(seed: int):
    devices = [ConstantDevice(f"d{i:03d}", RATED_W[i], SHARES) for i in range(N_DEV)]
    core = GatewayCore("gw", devices, params=AgentParams(k=3), seed=seed)
    kw = np.zeros((N_ROUNDS, 3, 4))
    states = np.zeros((N_ROUNDS, N_DEV * 3), dtype=np.int8)
    for m in range(N_ROUNDS):
        p_on, p_off = control(m)
        core.apply_control(p_on, p_off, m * ROUND_MS)
        agg = core.step(m * ROUND_MS)
        kw[m] = np.array(agg.kw)
        states[m] = core.machines.state
    return kw, states


def run_vector(replicas: int, seed: int):
    rated_kw = np.tile(np.array(RATED_W) / 1000.0, replicas)
    fleet = VectorFleet(rated_kw, SHARES, np.random.default_rng(seed))
    kw = np.zeros((N_ROUNDS, 3, 4))
    states = np.zeros((N_ROUNDS, N_DEV * 3 * replicas), dtype=np.int8)
    for m in range(N_ROUNDS):
        p_on, p_off = control(m)
        fleet.step(m * ROUND_MS / 1000.0, np.array(p_on), np.array(p_off))
        kw[m] = fleet.aggregate() / replicas
        states[m] = fleet.state.reshape(-1)
    return kw, states


def test_vector_fleet_matches_gateway_core():
    seeds = range(1, 41)
    core_runs = [run_core(s) for s in seeds]
    vec_kw, vec_states = run_vector(replicas=200, seed=7)
    core_kw = np.stack([r[0] for r in core_runs])             # (seeds, rounds, k, 4)

    # black tier never disabled in both
    assert np.all(core_kw[:, :, 2, 2:] == 0) and np.all(vec_kw[:, 2, 2:] == 0)
    total_kw = sum(RATED_W) / 1000.0
    for a, b in PHASES:
        core_phase = core_kw[:, a:b].mean(axis=1)            # (seeds, k, 4)
        mean, se = core_phase.mean(axis=0), core_phase.std(axis=0, ddof=1) / np.sqrt(len(seeds))
        vec_phase = vec_kw[a:b].mean(axis=0)
        # 5 standard errors of the core's mean, plus 0.5 % of fleet kW for the vector's own noise
        assert np.all(np.abs(vec_phase - mean) <= 5 * se + 0.005 * total_kw), (a, b, vec_phase, mean, se)

    # the trajectories agree round by round (no off-by-one in timers or switching): z-scores of
    # the vector's enabled kW per round against the core's mean over seeds
    core_en = core_kw[:, :, :2, 0:2].sum(axis=-1)                     # (seeds, rounds, 2 tiers)
    se_round = np.maximum(core_en.std(axis=0, ddof=1) / np.sqrt(len(seeds)), 0.05)
    z = (vec_kw[:, :2, 0:2].sum(axis=-1) - core_en.mean(axis=0)) / se_round
    assert np.max(np.abs(z)) < 5.5 and np.mean(z ** 2) < 2.0, (np.max(np.abs(z)), np.mean(z ** 2))
    # an off-by-one round in the timers would be visible: shifting the core by one round fails
    z_shift = (vec_kw[1:, :2, 0:2].sum(axis=-1) - core_en.mean(axis=0)[:-1]) / se_round[:-1]
    assert np.mean(z_shift ** 2) > 2 * np.mean(z ** 2)

    # refractory durations: the same distribution, and both match the analytical kernel
    d_core = np.concatenate([durations_from_trace(r[1]) for r in core_runs])
    d_vec = durations_from_trace(vec_states)
    kernel = expiry_kernel(120.0, 60.0, 2.0)
    support = np.flatnonzero(kernel > 0)
    for d in (d_core, d_vec):
        # the core draws integer ms U{0..60000}: exactly 120 s (d = 60) has probability 1/60001
        assert d.min() >= support.min() - 1 and d.max() <= support.max()
        d = np.maximum(d, support.min())
        hist = np.bincount(d, minlength=kernel.size)[support]
        expected = kernel[support] * d.size
        chi2 = float(np.sum((hist - expected) ** 2 / expected))
        assert chi2 < 70.0, chi2               # 29 dof: P(chi2 > 70) < 1e-4
    assert d_core.size > 500 and d_vec.size > 20_000
    assert abs(d_core.mean() - d_vec.mean()) < 4 * d_core.std() / np.sqrt(d_core.size)
