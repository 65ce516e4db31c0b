"""Cost of one gateway-agent round on CPython, and of the wire pieces it uses.

    python -m bench.agent_round [--devices 100] [--rounds 300] [--json PATH]

Figures (same process, same data):
- agent round (decode + verify one signed vector, step 100 devices, encode + publish the state
  report on the in-memory broker) vs the bare ``GatewayCore.step`` (baseline): the overhead the
  MQTT runtime adds per round;
- hand-written HMAC-SHA256 (MicroPython-compatible) vs CPython's C ``hmac`` (baseline);
- strict ``codec.decode_vector`` vs bare ``json.loads`` of the same payload (baseline);
- state-report encode (canonical JSON) vs ``json.dumps(sort_keys=True)`` (baseline).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time

from bench._report import Report
from edge_agent import codec, security, topics
from edge_agent.device import ConstantDevice
from edge_agent.gateway import GatewayCore
from edge_agent.params import AgentParams
from edge_agent.prng import Prng
from edge_agent.runtime import GatewayAgent
from edge_agent.transport import FakeBroker, FakeTransport

KEY = b"b" * 32
T0 = 1_700_000_000_000


def _devices(n):
    return [ConstantDevice("d%04d" % i, 500 + (i * 37) % 3000, (0.5, 0.3, 0.2)) for i in range(n)]


def _timed(fn, repeat):
    t = time.perf_counter()
    for i in range(repeat):
        fn(i)
    return (time.perf_counter() - t) / repeat


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_round")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=300)
    rep = Report("agent_round", argv, parser)
    n, rounds = rep.args.devices, rep.args.rounds
    params = AgentParams(round_s=2)

    core = GatewayCore("base", _devices(n), params, seed=1)
    base_s = _timed(lambda i: (core.apply_control([0.01, 0.01, 0.0], [0.01, 0.01, 0.0], T0 + 2000 * i),
                               core.step(T0 + 2000 * i)), rounds)

    broker = FakeBroker()
    agent = GatewayAgent(GatewayCore("gw", _devices(n), params, seed=1), FakeTransport(broker, "gw"),
                         "gw", "g", {"k1": KEY}, Prng(1), log=lambda level, msg: None)
    vectors = [security.make_vector("g", i + 1, [0.01, 0.01, 0.0], [0.01, 0.01, 0.0], T0 + 2000 * i,
                                    10_000, "k1", KEY) for i in range(rounds)]
    agent.tick(T0 - 1)

    def one_round(i):
        agent.handle(topics.vector("g"), vectors[i], T0 + 2000 * i)
        agent.run_round(T0 + 2000 * i + 1)
        broker.log.clear()

    agent_s = _timed(one_round, rounds)
    assert agent.metrics["vectors_applied"] == rounds, agent.metrics
    rep.figure("devices_per_gateway", n)
    rep.figure("agent_round_ms", agent_s * 1e3, "ms")
    rep.figure("core_step_ms", base_s * 1e3, "ms", note="baseline: GatewayCore.step alone")
    rep.ratio("agent_round_over_core_step", agent_s, base_s)
    rep.figure("gateways_per_core_at_2s_rounds", 2.0 / agent_s, "gateways",
               note="CPU only, no network")

    msg = security.signing_bytes(codec.decode_vector(vectors[0]))
    mine = _timed(lambda i: security.hmac_sha256(KEY, msg), 2000)
    ref = _timed(lambda i: hmac.new(KEY, msg, hashlib.sha256).digest(), 2000)
    rep.figure("hmac_sha256_us", mine * 1e6, "us")
    rep.ratio("hmac_by_hand_over_stdlib_hmac", mine, ref)

    dec = _timed(lambda i: codec.decode_vector(vectors[i % rounds]), 2000)
    raw = _timed(lambda i: json.loads(vectors[i % rounds]), 2000)
    rep.figure("decode_vector_us", dec * 1e6, "us")
    rep.ratio("strict_decode_over_json_loads", dec, raw)

    agg = agent.core.aggregate()
    enc = _timed(lambda i: codec.encode_state("gw", "g", 0, i % 256, T0, i, agg.w, agg.count, 5,
                                              False, 0), 2000)
    doc = json.loads(codec.encode_state("gw", "g", 0, 1, T0, 1, agg.w, agg.count, 5, False, 0))
    ref_enc = _timed(lambda i: json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), 2000)
    rep.figure("encode_state_us", enc * 1e6, "us")
    rep.ratio("canonical_encode_over_json_dumps", enc, ref_enc)
    rep.done()


if __name__ == "__main__":
    main()
