"""Named errors of the power-flow package (fail loudly, name the offending field)."""
from __future__ import annotations


class NetworkError(ValueError):
    """Base class: an invalid feeder definition or a failed computation on it."""


class UnknownBusError(NetworkError):
    """An element refers to a bus that the feeder does not define."""


class PhaseMismatchError(NetworkError):
    """Node lists, matrix sizes or phase counts of an element do not agree."""


class NonPositiveImpedanceError(NetworkError):
    """An impedance/rating that must be positive (or a non-singular matrix) is not."""


class InvalidLimitError(NetworkError):
    """An ampere rating (< 0 or not finite) or voltage limits (not 0 < v_min_pu < v_max_pu)."""


class IslandedSectionError(NetworkError):
    """Some bus·phase nodes have no path to the source."""


class UnsupportedElementError(NetworkError):
    """The OpenDSS circuit holds elements the model cannot represent (named in `names`)."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = list(names)


class OpenDSSImportError(NetworkError):
    """The OpenDSS engine could not compile or read the circuit (message from the engine)."""


class PowerFlowNotConverged(NetworkError):
    """The fixed-point iteration (or a control loop) did not converge within its limit."""

    def __init__(self, message: str, iterations: int, mismatch: float):
        super().__init__(message)
        self.iterations = iterations
        self.mismatch = mismatch


class UnknownElementError(NetworkError):
    """A control or lookup names an element that the feeder does not hold."""
