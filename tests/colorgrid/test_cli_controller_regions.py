"""`colorgrid controller --regions F --region-key-file K`: the controller in region mode (it takes
signed region sums, not gateway states); the two flags go together, bad files are named."""
import json
from types import SimpleNamespace

import pytest

from cloud.config import ConfigError, region_view
from colorgrid.cli import main
from colorgrid.commands.controller import core_from_args


def _files(tmp_path):
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps({"regions": {"north": {"prefixes": ["gw-n"]}, "south": {"gateways": ["gw-s1"]}}}))
    rkey = tmp_path / "region.key"
    rkey.write_text(json.dumps({"rk": (b"r" * 32).hex()}))
    ckey = tmp_path / "ctl.key"
    ckey.write_text((b"c" * 32).hex())
    return regions, rkey, ckey


def _args(**kw):
    base = dict(goal="constant:10", round_s=2.0, db=None, dispatch_key_file=None, sample_fraction=1.0,
                ramp_pct_per_round=3.0, enrollment=None, max_device_kw=None, max_gateway_kw=None,
                regions=None, region_key_file=None)
    return SimpleNamespace(**dict(base, **kw))


def test_region_mode_is_built_from_the_flags(tmp_path):
    regions, rkey, _ = _files(tmp_path)
    core = core_from_args(_args(regions=str(regions), region_key_file=str(rkey)), "k1", b"c" * 32, 0)
    assert core.regions is not None and core.regions.map.regions == ["north", "south"]
    assert core.regions.map.region_of("gw-n7") == "north" and core.regions.map.region_of("gw-x") is None
    # in region mode the controller listens to region sums, not to the gateways' states
    subs = core.subscriptions()
    assert "colorgrid/v1/region/+/+/sum" in subs and "colorgrid/v1/gw/+/+" not in subs
    assert "colorgrid/v1/gw/+/birth" in subs             # births still come from the gateways
    plain = core_from_args(_args(), "k1", b"c" * 32, 0)
    assert plain.regions is None and "colorgrid/v1/gw/+/+" in plain.subscriptions()


def test_region_flags_go_together_and_bad_files_are_named(tmp_path, capsys):
    regions, rkey, ckey = _files(tmp_path)
    with pytest.raises(ConfigError, match="--region-key-file"):
        core_from_args(_args(regions=str(regions)), "k1", b"c" * 32, 0)
    bad = tmp_path / "bad.json"
    bad.write_text("{\"regions\": []}")
    with pytest.raises(ConfigError, match="--regions"):
        region_view(str(bad), str(rkey))
    short = tmp_path / "short.key"
    short.write_text("abcd")
    with pytest.raises(ConfigError, match="--region-key-file"):
        region_view(str(regions), str(short))
    base = ["controller", "--broker", "mqtt://127.0.0.1:1", "--hmac-key-file", str(ckey), "--duration-s", "1"]
    assert main(base + ["--regions", str(regions)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--region-key-file" in err[0]
    assert main(base + ["--regions", str(bad), "--region-key-file", str(rkey)]) == 2
    assert "--regions" in capsys.readouterr().err
