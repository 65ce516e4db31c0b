"""Three-phase unbalanced distribution power flow (implicit Zbus) and sensitivities.

    from market.network import load_dss, solve_feeder, FeederNetwork
    feeder, report = load_dss("IEEE13Nodeckt.dss")     # OpenDSS reads the file; we convert it
    res = solve_feeder(feeder)                          # taps/caps/Q(V) controls if enabled
    fn = FeederNetwork(feeder); fn.set_injection("675.1", p_kw=100.0); snap = fn.solve()
    snap.i_amps, snap.loading_pct, snap.overloaded_branches(), snap.voltage_violations()
    sens = fn.sensitivities(injections, lines, voltages)  # PTDF, dV/dP, dV/dQ, loss factors

See market/network/README.md for the API and docs/powerflow.md for method and validation.
"""
from market.network.api import FakeNetworkModel, FeederNetwork, NetworkModel
from market.network.controls import solve_feeder, solve_with_controls
from market.network.errors import (InvalidLimitError, IslandedSectionError, NetworkError,
                                   NonPositiveImpedanceError, OpenDSSImportError, PhaseMismatchError,
                                   PowerFlowNotConverged, UnknownBusError, UnsupportedElementError)
from market.network.locations import UnknownLocationError, branch_id, parse_branch_id
from market.network.model import (V_MAX_PU, V_MIN_PU, Bus, CapControl, Capacitor, Feeder, Generator, Line, Load,
                                  Regulator, ShuntReactor, Source, Transformer, Winding)
from market.network.opendss_import import feeder_from_engine, load_dss
from market.network.sensitivity import Sensitivities, SensitivityModel, sensitivities
from market.network.snapshot import CurrentsUnavailableError, Overload, Snapshot, VoltageViolation
from market.network.solver import PowerFlowResult, solve
from market.network.timeseries import QSTSResult, qsts, run_qsts
from market.network.ybus import Network, build_network

__all__ = [
    "Bus", "CapControl", "Capacitor", "CurrentsUnavailableError", "FakeNetworkModel", "Feeder", "FeederNetwork",
    "Generator", "InvalidLimitError", "IslandedSectionError", "Line", "Load", "Network", "NetworkError",
    "NetworkModel", "NonPositiveImpedanceError", "OpenDSSImportError", "Overload", "PhaseMismatchError",
    "PowerFlowNotConverged", "PowerFlowResult", "QSTSResult", "Regulator", "Sensitivities", "SensitivityModel", "ShuntReactor", "Snapshot",
    "Source", "Transformer", "UnknownBusError", "UnknownLocationError", "UnsupportedElementError", "V_MAX_PU",
    "V_MIN_PU", "VoltageViolation", "Winding", "branch_id", "build_network", "feeder_from_engine", "load_dss",
    "parse_branch_id", "qsts", "run_qsts", "sensitivities", "solve", "solve_feeder", "solve_with_controls",
]
