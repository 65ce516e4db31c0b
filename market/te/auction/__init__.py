"""P2P auctions: call double auction (k-rule, McAfee), continuous order book, LEM-to-LEM exchange,
network charges, the price lookup contract, and the simulated day that settles on `market.settlement`."""
