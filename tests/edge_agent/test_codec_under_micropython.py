"""Same wire bytes, signatures and error messages under MicroPython (WebAssembly, in Node) and
CPython: runs tests/edge_agent/mpy/test_codec_mpy.py under both and compares the output."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "edge_agent" / "mpy" / "test_codec_mpy.py"


def _run(cmd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_codec_and_security_identical_under_micropython_and_cpython():
    node = shutil.which("node")
    assert node, "node is needed to run MicroPython (scripts/test.sh installs it)"
    micropython = _run([node, str(ROOT / "tools" / "mpy_wasm" / "run.mjs"), str(SCRIPT)])
    cpython = _run([sys.executable, str(SCRIPT)])
    assert micropython.endswith("done\n")
    assert micropython.splitlines() == cpython.splitlines()
