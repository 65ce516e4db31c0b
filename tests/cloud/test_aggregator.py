"""Aggregator scenarios: session rules (birth/death/bd_seq, seq gaps → rebirth), staleness,
missing gateways, sampling; sums checked against hand-computed tables."""
import numpy as np
import pytest

from cloud.aggregator import Aggregator, AggregatorError, sampled

KW_A = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, 0.0, 0.5], [2.0, 0.0, 0.0, 0.0]]
KW_B = [[10.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [3.0, 0.0, 0.0, 0.0]]


def born(agg, gid, group="g1", bd=0, cap=0.0, now=0):
    agg.on_birth(gid, group, bd, 0, 3, cap, now)


def test_sum_of_two_gateways_hand_computed():
    agg = Aggregator()
    born(agg, "a")
    born(agg, "b")
    assert agg.on_state("a", 0, 1, KW_A, None, 1000, 1000) is True
    assert agg.on_state("b", 0, 1, KW_B, None, 1000, 1000) is True
    snap = agg.snapshot("g1", 1500)
    np.testing.assert_allclose(snap.state_kw, [[11, 2, 4, 4], [0.5, 1, 0, 1.5], [5, 0, 0, 0]])
    assert (snap.n_live, snap.n_fresh, snap.n_carried, snap.n_missing) == (2, 2, 0, 0)
    assert snap.scale == 1.0
    assert agg.drain_rebirths() == []


def test_seq_gap_requests_rebirth_once_per_holdoff_and_keeps_data():
    agg = Aggregator(rebirth_holdoff_ms=5000)
    born(agg, "a")
    assert agg.on_state("a", 0, 1, KW_A, None, 0, 100)
    assert agg.on_state("a", 0, 3, KW_B, None, 0, 200) is False   # seq 2 lost
    assert agg.drain_rebirths() == [("a", "seq 3 after 1")]
    assert agg.on_state("a", 0, 7, KW_B, None, 0, 300) is False   # another gap inside holdoff
    assert agg.drain_rebirths() == []
    np.testing.assert_allclose(agg.snapshot("g1", 300).state_kw, KW_B)  # data still used
    agg.on_state("a", 0, 9, KW_B, None, 0, 6000)                   # holdoff elapsed
    assert [g for g, _ in agg.drain_rebirths()] == ["a"]


def test_seq_wraps_at_256():
    agg = Aggregator()
    agg.on_birth("a", "g1", 0, 254, 3, 0.0, 0)
    assert agg.on_state("a", 0, 255, KW_A, None, 0, 1)
    assert agg.on_state("a", 0, 0, KW_A, None, 0, 2)
    assert agg.drain_rebirths() == []


def test_state_without_birth_or_with_other_bd_seq_is_not_used():
    agg = Aggregator()
    assert agg.on_state("ghost", 0, 5, KW_A, None, 0, 0) is False
    born(agg, "a", bd=4)
    assert agg.on_state("a", 5, 1, KW_A, None, 0, 10) is False     # missed a birth of session 5
    assert [g for g, _ in agg.drain_rebirths()] == ["a", "ghost"]
    assert agg.snapshot("g1", 10).n_missing == 1


def test_death_matching_bd_seq_only():
    agg = Aggregator()
    born(agg, "a", bd=2)
    agg.on_state("a", 2, 1, KW_A, None, 0, 0)
    assert agg.on_death("a", 1, 10) is False          # late Will of an older session
    assert agg.snapshot("g1", 10).n_live == 1
    assert agg.on_death("a", 2, 20) is True
    snap = agg.snapshot("g1", 20)
    assert snap.n_live == 0 and float(snap.state_kw.sum()) == 0.0
    assert agg.groups() == []


def test_staleness_carry_then_missing_and_scale():
    agg = Aggregator(stale_after_ms=3000, max_carry_ms=10000)
    born(agg, "a", cap=10.0)
    born(agg, "b", cap=30.0)
    agg.on_state("a", 0, 1, KW_A, None, 0, 0)
    agg.on_state("b", 0, 1, KW_B, None, 0, 5000)
    s = agg.snapshot("g1", 6000)      # a is 6 s old: carried
    assert (s.n_fresh, s.n_carried, s.n_missing) == (1, 1, 0)
    s = agg.snapshot("g1", 12000)     # a is 12 s old: missing; b 7 s: carried
    assert (s.n_fresh, s.n_carried, s.n_missing) == (0, 1, 1)
    np.testing.assert_allclose(s.state_kw, KW_B)
    assert s.scale == pytest.approx(40.0 / 30.0)
    np.testing.assert_allclose(s.scaled_state_kw, np.array(KW_B) * 40 / 30)


def test_groups_are_separate_and_counts_summed():
    agg = Aggregator()
    born(agg, "a", group="bus1.a")
    born(agg, "b", group="bus2.b")
    agg.on_state("a", 0, 1, KW_A, [[1, 1, 1, 1]] * 3, 0, 0)
    agg.on_state("b", 0, 1, KW_B, [[2, 0, 0, 0]] * 3, 0, 0)
    assert agg.groups() == ["bus1.a", "bus2.b"]
    np.testing.assert_allclose(agg.snapshot("bus1.a", 0).state_kw, KW_A)
    np.testing.assert_allclose(agg.snapshot("bus2.b", 0).counts, [[2, 0, 0, 0]] * 3)


@pytest.mark.parametrize("table,field", [
    ([[1, 2, 3]], "tier_kw"),                                   # not (k, 4)
    ([[1, 2, 3, -1]] * 3, "tier_kw"),                           # negative
    ([[1, 2, 3, float("nan")]] * 3, "tier_kw"),                 # NaN
    ([[1, 2, 3, 4]] * 2, "tier_kw"),                            # k differs from birth
    ("junk", "tier_kw"),
])
def test_bad_tables_rejected_with_field_name(table, field):
    agg = Aggregator()
    born(agg, "a")
    with pytest.raises(AggregatorError, match=field):
        agg.on_state("a", 0, 1, table, None, 0, 0)


def test_bad_counters_rejected():
    agg = Aggregator()
    with pytest.raises(AggregatorError, match="bd_seq"):
        agg.on_birth("a", "g", 300, 0, 3, 0.0, 0)
    with pytest.raises(AggregatorError, match="seq"):
        agg.on_state("a", 0, -1, KW_A, None, 0, 0)


def test_sampling_is_stable_and_scaled():
    ids = [f"gw-{i:04d}" for i in range(2000)]
    frac = sum(sampled(g, 0.25) for g in ids) / len(ids)
    assert 0.2 < frac < 0.3
    assert [sampled(g, 0.25) for g in ids[:50]] == [sampled(g, 0.25) for g in ids[:50]]
    agg = Aggregator(sample_fraction=0.25)
    for g in ids[:400]:
        born(agg, g, cap=1.0)
        if agg.accepts_state(g):
            agg.on_state(g, 0, 1, [[1.0, 0, 0, 0]] * 3, None, 0, 0)
    s = agg.snapshot("g1", 0)
    n_in = sum(sampled(g, 0.25) for g in ids[:400])
    assert s.n_fresh == n_in and s.n_sampled_out == 400 - n_in
    assert s.scale == pytest.approx(400 / n_in)
    assert s.scaled_state_kw[0, 0] == pytest.approx(400.0)


def test_resume_from_registry_accepts_any_next_seq_then_enforces_order():
    agg = Aggregator()
    agg.resume("a", "g1", 5, 3, 10.0)
    assert agg.groups() == ["g1"]
    assert agg.on_state("a", 5, 200, KW_A, None, 0, 0) is True     # re-synchronises on any seq
    assert agg.on_state("a", 5, 202, KW_A, None, 0, 10) is False   # then gaps count again
    assert agg.on_state("a", 4, 203, KW_A, None, 0, 20) is False   # older session: not used
    assert [g for g, _ in agg.drain_rebirths()] == ["a"]
