"""The public anchor holds the main chain's checkpoints; sidechains are anchored through them
(sidechain checkpoint -> main-chain record -> main checkpoint -> anchor), on in-process py-evm."""
from __future__ import annotations

from colorgrid.cli import main as cli
from market.settlement.chains import record_checkpoints, register_sidechain
from market.settlement.evm.anchor import (EvmSettlementChain, anchor_checkpoints, check_anchors,
                                          check_side_through_main)
from market.settlement.keys import KeyPair
from market.settlement.ledger import WitnessValidator

from .test_chains import chain, world  # noqa: F401  (world is the fixture)


def test_main_chain_anchor_covers_every_recorded_sidechain_checkpoint(world):  # noqa: F811
    main, a, b = world["main"], world["a"], world["b"]
    evm = EvmSettlementChain()
    assert anchor_checkpoints(main.store, evm) == [1] and check_anchors(main.store, evm) == []
    ra, rb = check_side_through_main(a.store, main.store, evm), check_side_through_main(b.store, main.store, evm)
    assert (ra.checkpoints, ra.anchored, ra.problems) == (2, 2, []) and (rb.anchored, rb.problems) == (1, [])
    # a new sidechain checkpoint: first not recorded, then recorded but not in a main checkpoint, then anchored
    a.transfer("p1", "p2", 3, "pay", 1_000)
    a.checkpoint(3, world["va"])
    rep = check_side_through_main(a.store, main.store, evm)
    assert (rep.anchored, rep.not_recorded, rep.problems) == (2, 1, [])
    record_checkpoints(main, a.store, 1_100)
    rep = check_side_through_main(a.store, main.store, evm)
    assert (rep.anchored, rep.not_recorded, rep.not_in_main_checkpoint) == (2, 0, 1)
    main.checkpoint(2, main_validators())
    assert anchor_checkpoints(main.store, evm) == [2]
    assert check_side_through_main(a.store, main.store, evm).anchored == 3


def main_validators():
    return [WitnessValidator(KeyPair.derive(3, f"validator:main:{v}")) for v in ("dso", "aggregator", "community")]


def test_a_rewritten_and_resigned_main_chain_is_named_by_the_anchor(world, tmp_path):  # noqa: F811
    """The main operator and its validators collude: they rebuild the main chain without B's record.
    It verifies alone, but its checkpoint 1 no longer matches the public anchor."""
    main, a, b = world["main"], world["a"], world["b"]
    evm = EvmSettlementChain()
    anchor_checkpoints(main.store, evm)
    forged, vmain = chain(tmp_path / "forged-main.sqlite", "main")
    for side in (a, b):
        register_sidechain(forged, side, 0)
    record_checkpoints(forged, a.store, 300)
    forged.checkpoint(1, vmain)
    assert check_anchors(forged.store, evm) == [1]
    rep = check_side_through_main(a.store, forged.store, evm)
    assert rep.anchored == 0 and len(rep.problems) == 2
    assert "in main checkpoint 1, which differs from the public anchor" in rep.problems[0]


def test_cli_anchors_the_main_chain_and_checks_a_sidechain_through_it(world, capsys):  # noqa: F811
    p = world["paths"]
    assert cli(["ledger", "anchor", str(p["main"])]) == 0
    out = capsys.readouterr().out
    assert "anchored 1 checkpoint(s) now" in out and "main chain: 2 sidechain(s) registered, 3 sidechain" in out
    assert cli(["ledger", "anchor", str(p["a"]), "--main", str(p["main"])]) == 0
    out = capsys.readouterr().out
    assert "anchored 1 main-chain checkpoint(s) now" in out and "2 of 2 checkpoint(s) anchored through the main" in out
    assert cli(["ledger", "anchor", str(p["a"]), "--main", str(p["a"].parent / "none.sqlite")]) == 2
    assert "argument --main" in capsys.readouterr().err
