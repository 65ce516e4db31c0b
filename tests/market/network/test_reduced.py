"""The reduced (atom-space) re-solve: same currents, same fixed point, same convergence test as the
plain node-space iteration, from flat and warm starts, dense and sparse, with node injections."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from market.network import reduced
from market.network.injections import CVR, GEN, MOTOR, PQ, Z, I, Atoms, currents
from market.network.opendss_import import load_dss
from market.network.reduced import CompensatedCurrents
from market.network.solver import solve
from market.network.ybus import build_network


def _atoms(kinds: list[int], rng) -> Atoms:
    m = len(kinds)
    kind = np.array(kinds)
    s = (rng.uniform(1e3, 5e4, m) + 1j * rng.uniform(-1e4, 2e4, m)) * np.where(kind == GEN, -1.0, 1.0)
    vb = rng.choice([2401.8, 4160.0, 277.1], m)
    vmin = np.where(rng.random(m) < 0.5, 0.95, 0.9)
    vlow = np.where(kind == GEN, 0.0, np.where(rng.random(m) < 0.5, 0.5, 0.75))
    inc = sp.csr_matrix((np.ones(m), (np.arange(m), np.arange(m))), shape=(m, m))
    return Atoms(np.arange(m), np.full(m, -1), s, vb, vlow, vmin, np.full(m, 1.05), kind, np.full(m, 0.8),
                 np.full(m, 2.5), np.arange(m), [f"load.{k}" for k in range(m)], inc, np.ones(m), np.ones(m))


@pytest.mark.parametrize("kinds", [[PQ, Z, I, GEN] * 30, [PQ, Z, I, GEN, MOTOR, CVR] * 20])
def test_fused_currents_equal_the_load_models_in_every_region(kinds):
    """w(x) = y_d·x − I(x) of the fused formula equals injections.currents for |x| below Vlow,
    between Vlow and Vmin, in band and above Vmax, for every load model."""
    rng = np.random.default_rng(3)
    at = _atoms(kinds, rng)
    yd = rng.uniform(0.0, 0.01, len(kinds)) * (1 - 0.5j)
    w_of = CompensatedCurrents(at, yd, None)
    for scale in (0.3, 0.6, 0.8, 0.93, 1.0, 1.07, 1.3):
        x = at.vb * scale * rng.uniform(0.97, 1.03, len(kinds)) * np.exp(1j * rng.uniform(-np.pi, np.pi, len(kinds)))
        expected = yd * x - currents(at, x)
        assert np.allclose(w_of(x), expected, rtol=1e-12, atol=0.0), scale


def test_node_injections_are_constant_power_atoms():
    rng = np.random.default_rng(4)
    at = _atoms([PQ, Z], rng)
    s_extra = np.array([1.2e5 + 3e4j])
    w_of = CompensatedCurrents(at, np.array([0.01, 0.02, 0.0]), s_extra)
    x = np.array([2400.0 + 10j, 2390.0 - 50j, 2380.0 + 30j])
    assert np.isclose(w_of(x)[2], np.conj(s_extra[0] / x[2]), rtol=1e-14)  # injected conj(S/V)


@pytest.fixture(scope="module")
def ieee123(feeders_dir):
    feeder = load_dss(feeders_dir / "ieee123/IEEE123Master.dss")[0]
    return feeder, build_network(feeder)


def _plain_step_pu(net, res) -> float:
    """max |G(V) − V| / Vbase of one plain node-space step (solve_fixed_point's map) at the answer."""
    v_ext = np.append(res.v, 0.0)
    rhs = net.i_source_a + res.atoms.injection(v_ext) + net.ydn @ res.v
    if res.s_inject_va is not None:
        nz = np.nonzero(res.s_inject_va)[0]
        rhs[nz] += np.conj(res.s_inject_va[nz] / res.v[nz])
    return float(np.max(np.abs(net.solve_linear(rhs) - res.v) / net.vbase_v))


def test_warm_chord_flat_and_plain_solves_agree(ieee123):
    """Random load changes re-solved warm (chord steps from the previous iterate), from the flat
    start and by the plain node-space iteration give the same voltages; every answer is a fixed
    point to the requested tolerance."""
    feeder, net = ieee123
    rng = np.random.default_rng(11)
    base = solve(net, tol_pu=1e-10)
    prev = base
    for _ in range(6):
        atoms = base.atoms.scaled(float(rng.uniform(0.7, 1.3)))
        warm = solve(net, tol_pu=1e-10, atoms=atoms, v0=prev.v)
        flat = solve(net, tol_pu=1e-10, atoms=atoms, method="reduced")
        plain = solve(net, tol_pu=1e-10, atoms=atoms, method="plain")
        for res in (warm, flat):
            assert np.max(np.abs(res.v - plain.v) / net.vbase_v) < 1e-8
            assert _plain_step_pu(net, res) < 1e-10
        assert abs(warm.losses_va() - plain.losses_va()) < 1e-6 * abs(plain.losses_va())
        prev = warm
    assert net.reduced_cache["system"][1].chord is not None  # the warm solves used chord steps


def test_warm_start_from_any_voltage_and_with_injections(ieee123):
    feeder, net = ieee123
    s = np.zeros(net.n, complex)
    s[net.index[("48", 1)]] = 150e3 + 20e3j
    s[net.index[("76", 2)]] = -40e3
    ref = solve(net, tol_pu=1e-10, s_inject_va=s, method="plain")
    rough = ref.v * (1 + 0.01 * np.exp(1j * np.arange(net.n)))  # not a previous answer
    for res in (solve(net, tol_pu=1e-10, s_inject_va=s, v0=rough), solve(net, tol_pu=1e-10, s_inject_va=s)):
        assert np.max(np.abs(res.v - ref.v) / net.vbase_v) < 1e-8
        assert _plain_step_pu(net, res) < 1e-10


def test_sparse_reduction_equals_plain(ieee123, monkeypatch):
    """Above DENSE_MAX_ATOMS (forced here) Cᵀ M⁻¹ C is applied through SuperLU: same answer."""
    feeder, _ = ieee123
    monkeypatch.setattr(reduced, "DENSE_MAX_ATOMS", 0)
    monkeypatch.setattr(reduced.ReducedSystem.__init__, "__defaults__", (0,))
    net = build_network(feeder)
    plain = solve(net, tol_pu=1e-10, method="plain")
    res = solve(net, tol_pu=1e-10, method="reduced")
    assert net.reduced_cache["system"][1].k_blocks is None
    assert np.max(np.abs(res.v - plain.v) / net.vbase_v) < 1e-8
    warm = solve(net, tol_pu=1e-10, atoms=res.atoms.scaled(1.2), v0=res.v)
    again = solve(net, tol_pu=1e-10, atoms=res.atoms.scaled(1.2), method="plain")
    assert np.max(np.abs(warm.v - again.v) / net.vbase_v) < 1e-8


def test_atoms_of_another_structure_use_the_plain_iteration(ieee123):
    feeder, net = ieee123
    atoms = solve(net).atoms
    other = Atoms(atoms.a[:-1], atoms.b[:-1], atoms.s_va[:-1], atoms.vb[:-1], atoms.vlow[:-1], atoms.vmin[:-1],
                  atoms.vmax[:-1], atoms.kind[:-1], atoms.cw[:-1], atoms.cv[:-1], atoms.owner[:-1], atoms.owners,
                  atoms.incidence[:, :-1], atoms.p_share[:-1], atoms.q_share[:-1])
    with pytest.raises(ValueError, match="build-time"):
        solve(net, atoms=other, method="reduced")
    res = solve(net, atoms=other, tol_pu=1e-10)
    assert _plain_step_pu(net, res) < 1e-10


def test_injection_switched_off_and_on_reuses_the_reduction(ieee123):
    """Injection columns stay once created (S = 0 injects nothing): every answer still equals the
    plain iteration's; a new injection node extends the reduction."""
    feeder, _ = ieee123
    net = build_network(feeder)
    a, b = net.index[("48", 1)], net.index[("76", 2)]
    prev = solve(net, tol_pu=1e-10)
    systems = []
    for nodes in ([a], [], [a], [a, b], [b]):
        s = np.zeros(net.n, complex)
        s[nodes] = 120e3 + 10e3j
        res = solve(net, tol_pu=1e-10, s_inject_va=s, v0=prev.v)
        plain = solve(net, tol_pu=1e-10, s_inject_va=s, method="plain")
        assert np.max(np.abs(res.v - plain.v) / net.vbase_v) < 1e-8
        assert _plain_step_pu(net, res) < 1e-10
        systems.append(net.reduced_cache["system"][1])
        prev = res
    assert systems[0] is systems[1] is systems[2]  # switched off and on: same reduction
    assert systems[3] is not systems[2] and systems[3] is systems[4]  # extended once, then reused
    assert list(systems[4].extra) == sorted([a, b])


def test_inverse_without_blas_matches_lapack_and_refuses_singular():
    from market.network.chord import inverse_without_blas

    rng = np.random.default_rng(5)
    a = rng.normal(size=(40, 40))
    a[[0, 1]] = a[[1, 0]]  # pivoting needed
    a[0, 0] = 0.0
    assert np.allclose(inverse_without_blas(a) @ a, np.eye(40), atol=1e-10)
    singular = a.copy()
    singular[5] = 2.0 * singular[3]
    with pytest.raises(np.linalg.LinAlgError):
        inverse_without_blas(singular)


def test_chord_giving_up_falls_back_to_anderson_with_the_same_answer(ieee123, monkeypatch):
    from market.network import solver

    feeder, _ = ieee123
    net = build_network(feeder)
    first = solve(net, tol_pu=1e-10)
    warm = solve(net, tol_pu=1e-10, atoms=first.atoms.scaled(1.1), v0=first.v)  # builds the chord
    monkeypatch.setattr(solver, "CHORD_MAX_STEPS", 1)
    atoms = first.atoms.scaled(0.7)
    res = solve(net, tol_pu=1e-10, atoms=atoms, v0=warm.v)
    plain = solve(net, tol_pu=1e-10, atoms=atoms, method="plain")
    assert res.iterations > 1 and net.reduced_cache["system"][1].chord.stale
    assert np.max(np.abs(res.v - plain.v) / net.vbase_v) < 1e-8
    assert _plain_step_pu(net, res) < 1e-10


def test_chord_with_the_lapack_inverse(ieee123, monkeypatch):
    """Above GJ_MAX (forced here) the chord inverse is LAPACK's: same answers."""
    from market.network import chord

    monkeypatch.setattr(chord, "GJ_MAX", 0)
    feeder, _ = ieee123
    net = build_network(feeder)
    prev = solve(net, tol_pu=1e-10)
    for k in (1.15, 0.85):
        atoms = prev.atoms.scaled(k)
        res = solve(net, tol_pu=1e-10, atoms=atoms, v0=prev.v)
        plain = solve(net, tol_pu=1e-10, atoms=atoms, method="plain")
        assert np.max(np.abs(res.v - plain.v) / net.vbase_v) < 1e-8
        prev = res
    assert net.reduced_cache["system"][1].chord is not None
