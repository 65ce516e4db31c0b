"""Vocabulary shared by the network, the market and the cloud (stdlib only, imports nothing).

The device vocabulary (states, tiers, refractory parameters) lives in `edge_agent` because the
MicroPython gateway core may import nothing else; what the feeder, the market and the controller
share without the gateway lives here:

- `vocab.location`: the one location id for a bus·phase (`"671.1"`) or a three-phase bus (`"671"`).
"""
