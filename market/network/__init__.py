"""Three-phase unbalanced distribution power flow (implicit Zbus) and sensitivities.

    from market.network import load_dss, solve_feeder, FeederNetwork
    feeder, report = load_dss("IEEE13Nodeckt.dss")     # OpenDSS reads the file; we convert it
    res = solve_feeder(feeder)                          # taps/caps/Q(V) controls if enabled
    fn = FeederNetwork(feeder); fn.set_injection("675", 1, 100.0); snap = fn.solve()
    sens = fn.sensitivities(injections, lines, voltages)  # PTDF, dV/dP, dV/dQ, loss factors

See market/network/README.md for the API and docs/powerflow.md for method and validation.
"""
from market.network.api import FakeNetworkModel, FeederNetwork, NetworkModel, Snapshot
from market.network.controls import solve_feeder, solve_with_controls
from market.network.errors import (IslandedSectionError, NetworkError, NonPositiveImpedanceError,
                                   OpenDSSImportError, PhaseMismatchError, PowerFlowNotConverged,
                                   UnknownBusError, UnsupportedElementError)
from market.network.model import (Bus, CapControl, Capacitor, Feeder, Generator, Line, Load, Regulator, Source,
                                  Transformer, Winding)
from market.network.opendss_import import feeder_from_engine, load_dss
from market.network.sensitivity import Sensitivities, SensitivityModel, sensitivities
from market.network.solver import PowerFlowResult, solve
from market.network.ybus import Network, build_network

__all__ = [
    "Bus", "CapControl", "Capacitor", "FakeNetworkModel", "Feeder", "FeederNetwork", "Generator",
    "IslandedSectionError", "Line", "Load", "Network", "NetworkError", "NetworkModel", "NonPositiveImpedanceError",
    "OpenDSSImportError", "PhaseMismatchError", "PowerFlowNotConverged", "PowerFlowResult", "Regulator",
    "Sensitivities", "SensitivityModel", "Snapshot", "Source", "Transformer", "UnknownBusError",
    "UnsupportedElementError", "Winding", "build_network", "feeder_from_engine", "load_dss", "sensitivities",
    "solve", "solve_feeder", "solve_with_controls",
]
