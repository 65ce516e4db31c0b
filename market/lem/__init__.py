"""Local energy market (LEM): day-ahead clearing on the three-phase feeder and DLMPs from LP duals.

    from market.lem import load_market, build_network_data, clear_dam
    market = load_market("offers.json")
    net = build_network_data(FeederNetwork.from_dss(path), market.intervals)
    result = clear_dam(market, net)          # MIP, then the fixed-integer pricing LP
    result.prices.dlmp_usd_per_mwh           # (locations × intervals), with its four components

See market/lem/README.md.
"""
