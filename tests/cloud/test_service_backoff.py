"""The controller service reconnects with the project's one reconnect policy (edge_agent.reconnect):
defaults unchanged (0.5 s · 2^n, cap 10 s, equal jitter), cap configurable, bad settings refused."""
import asyncio
import random

import pytest

from cloud.goals import ConstantGoal
from cloud.rounds import ControllerCore
from cloud.service import ControllerService, ServiceError
from edge_agent.reconnect import Backoff
from firmware_sim.broker import free_port

KEY = b"s" * 32


def core():
    return ControllerCore("ctlb", ConstantGoal(3.0), "k1", KEY, round_ms=200)


def test_defaults_are_half_a_second_doubling_to_ten():
    service = ControllerService(core(), "127.0.0.1", 1)
    assert isinstance(service.backoff, Backoff)
    assert (service.backoff.base_ms, service.backoff.cap_ms) == (500, 10_000)
    nominal = []
    for _ in range(8):
        nominal.append(service.backoff.nominal_ms())
        service.backoff.failure(0)
    assert nominal == [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]


@pytest.mark.parametrize("base_ms, cap_ms", [(0, 100), (200, 100), (-5, 10)])
def test_bad_backoff_settings_name_the_fields(base_ms, cap_ms):
    with pytest.raises(ServiceError, match="^backoff_base_ms, backoff_cap_ms: "):
        ControllerService(core(), "127.0.0.1", 1, backoff_base_ms=base_ms, backoff_cap_ms=cap_ms)


async def test_unreachable_broker_waits_the_backoff_delays():
    """Nothing listens on the port: every connect fails; the waits are exactly the policy's
    draws for the same seed (base 40 ms, cap 100 ms)."""
    service = ControllerService(core(), "127.0.0.1", free_port(), backoff_base_ms=40,
                                backoff_cap_ms=100, rng=random.Random(7))
    delays_ms, failure = [], service.backoff.failure
    stop = asyncio.Event()

    def record(now_ms):
        delays_ms.append(failure(now_ms))
        if len(delays_ms) == 4:
            stop.set()
        return delays_ms[-1]

    service.backoff.failure = record
    await asyncio.wait_for(service.run(stop), timeout=30)
    expected = Backoff(random.Random(7), 40, 100)
    assert delays_ms == [expected.failure(0) for _ in range(4)]
    assert service.connects == 0 and not service.connected.is_set()
