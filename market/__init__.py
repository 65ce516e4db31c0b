"""Market layer: distribution power flow (network), transactive P2P (te), the settlement ledger (settlement).

The local energy market (lem) and the VPP (vpp) are next; see market/README.md."""
