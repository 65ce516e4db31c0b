"""Branch currents, ratings and loading against OpenDSS in the same process.

Protocol as test_opendss_validation: compile, settle controls in OpenDSS, freeze them, solve
again, import that state, solve it with colorgrid (through FeederNetwork, the market's API).
Then per line and transformer: every conductor current (all terminals) against
`CktElement.Currents()`/`CurrentsMagAng()`, the ratings against `CktElement.NormalAmps()` /
`EmergAmps()`, and the loading against OpenDSS's own `PDElements.AllPctNorm/AllPctEmerg`.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from market.network.api import FeederNetwork
from market.network.opendss_import import compile_dss, feeder_from_engine
from market.network.reference import freeze_controls, solve_opendss

pytestmark = pytest.mark.opendss

CURRENT_TOL_A = 1e-3  # |ΔI| per conductor; measured ≤ 1.1e-5 A (docs/powerflow.md)


def _dss():
    import opendssdirect as dss

    return dss


def solved(feeders_dir, path: str) -> FeederNetwork:
    compile_dss(feeders_dir / path)
    solve_opendss(controls=True)
    freeze_controls()
    assert solve_opendss(controls=False).converged
    fn = FeederNetwork(feeder_from_engine()[0])
    fn.snap = fn.solve()
    return fn


def opendss_currents(element: str) -> tuple[np.ndarray, np.ndarray]:
    """(complex currents into every conductor, their magnitudes from CurrentsMagAng) of `element`."""
    dss = _dss()
    dss.Circuit.SetActiveElement(element)
    raw = np.asarray(dss.CktElement.Currents())
    mag = np.asarray(dss.CktElement.CurrentsMagAng())[0::2]
    return raw[0::2] + 1j * raw[1::2], mag


def element_blocks(fn: FeederNetwork):
    """(element id, stacked-row range) of every line and transformer in the network."""
    r0 = 0
    for blk in fn.net.blocks:
        if blk.kind in ("line", "transformer"):
            yield blk.element, slice(r0, r0 + len(blk.index)), blk
        r0 += len(blk.index)


@pytest.mark.parametrize("path", ["ieee13/IEEE13Nodeckt.dss", "ieee123/IEEE123Master.dss", "ieee37/ieee37.dss"])
def test_currents_per_conductor_equal_opendss(feeders_dir, path):
    fn = solved(feeders_dir, path)
    snap = fn.snap
    cur = fn.last.terminal_currents()
    worst = 0.0
    for element, rows, blk in element_blocks(fn):
        theirs, theirs_mag = opendss_currents(element)
        assert len(theirs) == rows.stop - rows.start, element
        worst = max(worst, float(np.max(np.abs(cur[rows] - theirs))))
        # the snapshot's sending/receiving-end magnitudes are OpenDSS's CurrentsMagAng values
        n1 = blk.n_terminal1
        for j in range(n1):
            if blk.conductors[j][1] == 0:
                continue
            i = snap.line_index((element, blk.conductors[j][1]))
            assert abs(snap.i_amps[i] - theirs_mag[j]) <= CURRENT_TOL_A, (element, j)
            assert abs(snap.i_to_amps[i] - theirs_mag[n1 + j]) <= CURRENT_TOL_A, (element, j)
    assert worst <= CURRENT_TOL_A, f"{path}: max |dI| {worst:.3g} A"


@pytest.mark.parametrize("path", ["ieee13/IEEE13Nodeckt.dss", "ieee123/IEEE123Master.dss"])
def test_ratings_and_loading_equal_opendss(feeders_dir, path):
    fn = solved(feeders_dir, path)
    snap = fn.snap
    dss = _dss()
    pct_norm = dict(zip((n.lower() for n in dss.PDElements.AllNames()), dss.PDElements.AllPctNorm()))
    pct_emerg = dict(zip((n.lower() for n in dss.PDElements.AllNames()), dss.PDElements.AllPctEmerg()))
    for element, rows, blk in element_blocks(fn):
        dss.Circuit.SetActiveElement(element)
        norm, emerg = dss.CktElement.NormalAmps(), dss.CktElement.EmergAmps()
        phases = dss.CktElement.NumPhases()
        mine = [snap.line_index((element, k)) for _, k in blk.conductors[:phases] if k != 0]
        assert np.allclose(snap.norm_amps[mine], norm, rtol=1e-12) and np.allclose(snap.emerg_amps[mine], emerg,
                                                                                     rtol=1e-12), element
        # OpenDSS's percent loading: the largest terminal-1 phase current over the terminal-1 rating
        assert abs(100.0 * np.max(snap.i_amps[mine]) / norm - pct_norm[element]) <= 1e-4, element
        assert abs(100.0 * np.max(snap.i_amps[mine]) / emerg - pct_emerg[element]) <= 1e-4, element
        # colorgrid's loading also checks the other end(s), each against its own rating
        _, mag = opendss_currents(element)
        per = blk.n_terminal1
        for i, j in zip(mine, [j for j, (_, k) in enumerate(blk.conductors[:phases]) if k != 0]):
            ends = [mag[t * per + j] / rating for t, rating in enumerate(end_ratings(fn, element, norm))]
            assert abs(snap.loading_pct[i] - 100.0 * max(ends)) <= 1e-4, (element, j)


def end_ratings(fn: FeederNetwork, element: str, norm_w1: float) -> list[float]:
    """Normal rating per terminal, hand-derived: a line's on both ends; a transformer's winding w
    from OpenDSS's winding-1 rating as kVA_w/kVA_1 · kV_1/kV_w (the same formula on each winding)."""
    kind, name = element.split(".", 1)
    if kind != "transformer":  # lines, switches, series reactors
        return [norm_w1, norm_w1]
    ws = fn.feeder.transformer(name).windings
    return [norm_w1 * (w.kva / ws[0].kva) * (ws[0].kv / w.kv) for w in ws]


def test_transformer_winding_ratings_from_kva(tmp_path):
    """normhkva/emerghkva over each winding's phase kV, as OpenDSS rates winding 1 (hand-computed)."""
    dss = _dss()
    text = "\n".join([
        "new circuit.t basekv=12.47 bus1=src phases=3",
        "new transformer.t3 phases=3 windings=2 buses=(src, c) conns=(delta, wye) kvs=(12.47, 0.48) "
        "kvas=(300, 300) normhkva=400",
        "new transformer.ct phases=1 windings=3 buses=(src.1, s.1.0, s.0.2) kvs=(7.2, 0.12, 0.12) "
        "kvas=(25, 25, 25) normhkva=27.5 emerghkva=37.5",
        "new transformer.t2 phases=2 windings=2 buses=(src.1.2, d.1.2) kvs=(12.47, 0.48) kvas=(100, 50)",
        "new load.c bus1=c kv=0.48 kw=10", "new load.s bus1=s.1.2 phases=1 kv=0.24 kw=5",
        "new load.d bus1=d.1.2 phases=2 kv=0.48 kw=5", "solve"])  # the solve makes the source's Yprim
    path = tmp_path / "ratings.dss"
    path.write_text(text + "\n")
    compile_dss(path)
    feeder, _ = feeder_from_engine()
    got = {(tr.name, i): (w.norm_amps, w.emerg_amps) for tr in feeder.transformers for i, w in enumerate(tr.windings)}
    s3 = math.sqrt(3.0)
    want = {("t3", 0): (400 / (s3 * 12.47), 450 / (s3 * 12.47)),  # emerghkva defaults to 1.5·kVA
            ("t3", 1): (400 / (s3 * 0.48), 450 / (s3 * 0.48)),
            ("ct", 0): (27.5 / 7.2, 37.5 / 7.2), ("ct", 1): (27.5 / 0.12, 37.5 / 0.12),
            ("ct", 2): (27.5 / 0.12, 37.5 / 0.12),
            ("t2", 0): (110 / 2 / (12.47 / s3), 150 / 2 / (12.47 / s3)),  # normhkva defaults to 1.1·kVA
            ("t2", 1): (55 / 2 / (0.48 / s3), 75 / 2 / (0.48 / s3))}
    assert set(got) == set(want)
    for key, (norm, emerg) in want.items():
        assert got[key] == pytest.approx((norm, emerg), rel=1e-9), key


def test_voltage_limits_come_from_the_file(tmp_path, feeders_dir):
    master = (feeders_dir / "ieee13" / "IEEE13Nodeckt.dss").resolve()
    path = tmp_path / "limits.dss"
    path.write_text(f'redirect "{master}"\nset normvminpu=0.92 normvmaxpu=1.06\n')
    compile_dss(path)
    feeder, _ = feeder_from_engine()
    assert {(b.v_min_pu, b.v_max_pu) for b in feeder.buses.values()} == {(0.92, 1.06)}


def test_series_reactor_is_named_and_rated_as_in_opendss(tmp_path):
    path = tmp_path / "reactor.dss"
    path.write_text("\n".join([
        "new circuit.r basekv=12.47 bus1=src phases=3",
        "new reactor.r1 phases=3 bus1=src bus2=b r=0.05 x=0.5 normamps=123 emergamps=234",
        "new line.l1 phases=3 bus1=b bus2=c r1=0.1 x1=0.3 r0=0.3 x0=0.9 c1=0 c0=0 length=1 normamps=50 emergamps=75",
        "new load.c bus1=c kv=12.47 kw=1500 kvar=500"]) + "\n")
    compile_dss(path)
    assert solve_opendss(controls=False).converged  # tolerance 1e-8, as the feeders
    fn = FeederNetwork(feeder_from_engine()[0])
    snap = fn.solve()
    assert snap.branch_ids[:3] == ["line.l1.1", "line.l1.2", "line.l1.3"]
    assert snap.branch_ids[3:] == ["reactor.r1.1", "reactor.r1.2", "reactor.r1.3"]
    row = snap.line_index("reactor.r1.2")
    assert (snap.norm_amps[row], snap.emerg_amps[row]) == (123.0, 234.0)
    _, mag = opendss_currents("reactor.r1")
    assert abs(snap.i_amps[row] - mag[1]) <= CURRENT_TOL_A
    assert abs(snap.loading_pct[row] - 100.0 * max(mag[1], mag[4]) / 123.0) <= 100.0 * CURRENT_TOL_A / 123.0
    fn.set_rating("reactor.r1", norm_amps=10.0)
    assert fn.solve().loading("reactor.r1.2") == pytest.approx(snap.loading_pct[row] * 12.3, rel=1e-9)
