"""Device physics and simulated fleets (vectorized, and real edge_agent gateways over a broker)."""
