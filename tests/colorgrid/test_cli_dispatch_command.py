"""`colorgrid dispatch` and `colorgrid controller --goal dispatch`: bad input is named, exit 2,
nothing published (no broker needed: the checks run before connecting)."""
import json

from colorgrid.cli import main
from cloud.config import ConfigError as CommandError, parse_goal, read_keys


def test_bad_points_and_keys_are_named(tmp_path, capsys):
    key = tmp_path / "k.hex"
    key.write_text((b"v" * 32).hex())
    base = ["dispatch", "--broker", "mqtt://127.0.0.1:1", "--group", "g0", "--hmac-key-file", str(key)]
    cases = [
        (["--point", "10"], "--point: expected T_S:KW"),
        ([], "--point/--schedule: give points"),
        (["--point", "0:5", "--point", "0:6"], "points[1].ts_ms: not after the previous point"),
        (["--point", "0:-5"], "points[0].goal_kw: out of range"),
        (["--point", "0:nan"], "points[0].goal_kw: out of range"),
        (["--point", "0:5", "--valid-for-s", "0"], "--valid-for-s: must be > 0"),
        (["--schedule", str(tmp_path / "missing.csv")], "--schedule: file not found"),
        (["--point", "0:5"], "--broker: mqtt://127.0.0.1:1"),           # nobody listens on port 1
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, (extra, message)  # errors on stderr
    bad_group = ["dispatch", "--broker", "mqtt://127.0.0.1:1", "--group", "a/b", "--point", "0:1",
                 "--hmac-key-file", str(key)]
    assert main(bad_group) == 2 and "group" in capsys.readouterr().err


def test_schedule_csv_and_goal_spec(tmp_path):
    from cloud.dispatch import DispatchGoal
    from cloud.goals import ConstantGoal
    from cloud.goals import FractionOfDemand
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"vpp": (b"v" * 32).hex()}))
    table = read_keys(str(keys), "ignored")
    assert table == {"vpp": b"v" * 32}
    goal = parse_goal("dispatch:constant:12", 0, table)
    assert isinstance(goal, DispatchGoal) and isinstance(goal.fallback, ConstantGoal)
    assert goal.goal_kw("g", 0) == 12.0
    default = parse_goal("dispatch", 0, table)
    assert isinstance(default.fallback, FractionOfDemand)            # no shedding without a dispatch
    for spec, keys_ in (("dispatch", None), ("dispatch:bogus", table)):
        try:
            parse_goal(spec, 0, keys_)
        except CommandError as exc:
            assert "--dispatch-key-file" in str(exc) or "--goal" in str(exc)
        else:
            raise AssertionError(spec)
    short = tmp_path / "short.hex"
    short.write_text("abcd")
    try:
        read_keys(str(short), "x")
    except CommandError as exc:
        assert "--dispatch-key-file" in str(exc)
    else:
        raise AssertionError("short key accepted")
