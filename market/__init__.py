"""Market layer: distribution power flow (network), LEM clearing (lem), VPP (vpp), transactive P2P (te)."""
