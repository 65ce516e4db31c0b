"""`colorgrid agent --config gateway.toml` as a process against a real mosquitto: birth, reports,
a signed vector applied, clean death at the end, results under --out; config errors name the field."""
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent import cli, codec, security, topics, urls
from tests.broker import mosquitto  # noqa: F401  (fixture)
from tests.edge_agent.mqtt_helpers import Observer

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))

CONFIG = """
[gateway]
id = "gw-cli"
group = "bus2.b"
seed = 3
bd_seq_file = "bd_seq"

[broker]
url = "mqtt://127.0.0.1:1"
keepalive_s = 5

[security]
key_file = "hmac.key"

[params]
k = 3
round_s = 0.5

[[devices]]
id = "heater"
kind = "thermostatic"
rated_w = 4000
tier_shares = [0.5, 0.5, 0.0]

[[devices]]
id = "pump"
rated_w = 1000
tier_shares = [1.0, 0.0, 0.0]
"""


def write_config(tmp_path, text=CONFIG):
    (tmp_path / "hmac.key").write_text(KEY.hex() + "\n")
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


@pytest.mark.broker
def test_agent_command_end_to_end(mosquitto, tmp_path):
    broker = mosquitto()
    obs = Observer(broker)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorgrid", "agent", "--config", str(write_config(tmp_path)),
         "--broker", broker.url, "--duration-s", "4", "--out", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        birth = codec.decode_birth(obs.wait_topic(topics.birth("gw-cli"), timeout_s=15)[0].payload)
        assert birth["devices"] == [
            {"device_id": "heater", "kind": "thermostatic", "tier_w": [2000, 2000, 0]},
            {"device_id": "pump", "kind": "constant", "tier_w": [1000, 0, 0]}]
        now = int(time.time() * 1000)
        obs.publish(topics.vector("bus2.b"),
                    security.make_vector("bus2.b", now // 500, [0, 0, 0], [1, 0, 0], now, 5000, "k1", KEY))
        obs.wait(lambda: any(codec.decode_state(m.payload)["vector_round_id"] > 0
                             for m in obs.on(topics.state("gw-cli"))), 5, "vector applied")
        assert proc.wait(timeout=20) == 0, proc.stdout.read()
    finally:
        proc.kill()
    death = codec.decode_death(obs.wait_topic(topics.death("gw-cli"))[0].payload)
    assert death["reason"] == "shutdown"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"]["vectors_applied"] == 1 and summary["figures"]["connects"] == 1
    rows = list(csv.DictReader((out / "reports.csv").open()))
    assert rows[0]["green_EF_w"] != "" and "black_DR_w" in rows[0]
    applied = [r for r in rows if r["vector_round_id"] != "-1"]
    assert applied and all(r["green_EF_w"] == "0" for r in applied[:1])
    assert (tmp_path / "bd_seq").read_text().strip() == "0"
    obs.close()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('group = "bus2.b"', 'group = "bus/2"'), "gateway.group: not an identifier"),
    (lambda t: t.replace("tier_shares = [1.0, 0.0, 0.0]", "tier_shares = [1.0]"),
     "devices[1].tier_shares: expected 3 shares"),
    (lambda t: t.replace('key_file = "hmac.key"', 'key_file = "nope.key"'), "security.key_file: cannot read"),
    (lambda t: t.replace("round_s = 0.5", "round_s = -1"), "params.round_s"),
    (lambda t: t + "\n[extra]\n", "extra: unknown section"),
    (lambda t: t.replace('url = "mqtt://127.0.0.1:1"', 'url = "http://x"'), "broker.url: expected mqtt://"),
    (lambda t: t.replace('url = "mqtt://127.0.0.1:1"', 'url = "mqtt://h:x"'), "broker.url: bad port 'x'"),
    (lambda t: t.replace('key_file = "hmac.key"', 'keys = { k1 = "abcd" }'),
     "security.keys: key 'k1': shorter than 16 bytes"),
    (lambda t: t.replace('key_file = "hmac.key"', 'keys = { "a/b" = "%s" }' % KEY.hex()),
     "security.keys: key 'a/b': not an identifier"),
    (lambda t: t.replace('key_file = "hmac.key"', ''), "security.keys: missing"),
])
def test_config_errors_name_the_field(tmp_path, edit, message):
    path = write_config(tmp_path, edit(CONFIG))
    with pytest.raises(cli.ConfigError) as err:
        cli.build_agent(cli.load_config(path))
    assert str(err.value).startswith(message)


def test_broker_flag_is_named_in_its_error(tmp_path):
    with pytest.raises(cli.ConfigError, match="^--broker: expected mqtt://"):
        cli.build_agent(cli.load_config(write_config(tmp_path)), "tcp://x")


def test_key_file_json_table(tmp_path):
    path = write_config(tmp_path)
    (tmp_path / "hmac.key").write_text(json.dumps({"k2": KEY.hex(), "k1": KEY.hex()}))
    assert cli.read_keys(cli.load_config(path)["security"], tmp_path) == {"k1": KEY, "k2": KEY}
    (tmp_path / "hmac.key").write_text("{broken")
    with pytest.raises(cli.ConfigError, match=r"^security.key_file: .*hmac.key: not hex, and not a JSON"):
        cli.read_keys(cli.load_config(path)["security"], tmp_path)


def test_results_are_written_by_the_command_not_the_agent(tmp_path):
    """edge_agent.cli returns what --out holds; colorgrid.commands.agent writes it (§8)."""
    from colorgrid.commands.agent import write_results
    result = cli.AgentRun({"gateway_id": "gw", "group": "g", "broker": "mqtt://h", "duration_s": 1.0},
                          3, ["ts_ms", "round"], [[1000, 0], [3000, 1]],
                          [("rounds", 2, "count"), ("bd_seq", 0, "")])
    summary = write_results(tmp_path / "out", result)
    assert (tmp_path / "out" / "reports.csv").read_text() == "ts_ms,round\n1000,0\n3000,1\n"
    assert summary["figures"] == {"rounds": 2, "bd_seq": 0} and summary["units"] == {"rounds": "count"}
    assert summary["command"] == "agent" and summary["seed"] == 3
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["params"]["gateway_id"] == "gw"


def test_config_error_exit_code_2(tmp_path):
    path = write_config(tmp_path, CONFIG.replace('id = "gw-cli"', ""))
    proc = subprocess.run([sys.executable, "-m", "colorgrid", "agent", "--config", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "gateway.id: missing" in proc.stderr


def test_example_config_describes_a_valid_gateway():
    cfg = cli.load_config(ROOT / "deploy" / "gateway.example.toml")
    from edge_agent.params import AgentParams
    params = AgentParams.from_dict(cfg["params"])
    devices = cli.make_devices(cfg["devices"], params.k)
    assert [d.device_id for d in devices] == ["water-heater", "pool-pump", "fridge"]
    assert urls.parse_broker_url(cfg["broker"]["url"]) == ("192.168.1.10", 1883, False)


def test_report_key_signs_the_gateways_messages(tmp_path):
    """Issue 16.4: the gateway's own key, from [security] report_key or report_key_file."""
    own = bytes(range(100, 132))
    text = CONFIG.replace('key_file = "hmac.key"', 'key_file = "hmac.key"\nreport_key_file = "own.key"')
    path = write_config(tmp_path, text)
    (tmp_path / "own.key").write_text(own.hex())
    agent = cli.build_agent(cli.load_config(path))
    assert (agent.report_key_id, agent.report_key) == ("gw-cli", own)
    msg = json.loads(agent._signed(codec.encode_death("gw-cli", 1, 5)))
    assert security.verify(msg, {"gw-cli": own}) == ""
    text = CONFIG.replace('key_file = "hmac.key"', 'key_file = "hmac.key"\nreport_key = { gk = "%s" }' % own.hex())
    agent = cli.build_agent(cli.load_config(write_config(tmp_path, text)))
    assert (agent.report_key_id, agent.report_key) == ("gk", own)
    text = CONFIG.replace('key_file = "hmac.key"', 'key_file = "hmac.key"\nreport_key = { gk = "abcd" }')
    with pytest.raises(cli.ConfigError, match="^security.report_key: key 'gk': shorter than 16 bytes"):
        cli.build_agent(cli.load_config(write_config(tmp_path, text)))
    assert cli.build_agent(cli.load_config(write_config(tmp_path))).report_key is None
