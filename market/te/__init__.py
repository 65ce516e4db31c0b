"""Transactive P2P market: `market.te.auction` (orders, clearing, charges, the simulated day); it settles on `market.settlement`."""
