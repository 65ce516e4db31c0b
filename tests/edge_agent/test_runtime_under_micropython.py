"""The agent's whole session (birth, signed control, rejections, fail-safe, outage with
store-and-forward, reconnect, rebirth command) produces byte-identical broker traffic under
MicroPython (WebAssembly, in Node) and CPython."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "edge_agent" / "mpy" / "test_runtime_mpy.py"


def _run(cmd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_runtime_traffic_identical_under_micropython_and_cpython():
    node = shutil.which("node")
    assert node, "node is needed to run MicroPython (scripts/test.sh installs it)"
    micropython = _run([node, str(ROOT / "tools" / "mpy_wasm" / "run.mjs"), str(SCRIPT)])
    cpython = _run([sys.executable, str(SCRIPT)])
    lines = micropython.splitlines()
    assert lines[-1] == "done" and len(lines) > 20
    assert sum(" colorgrid/v1/gw/gw-1/birth " in line for line in lines) == 3
    assert lines == cpython.splitlines()
