"""market/network imports only numpy, scipy, opendssdirect, the shared vocabulary (vocab) and the standard library."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ALLOWED = {"numpy", "scipy", "opendssdirect", "market", "vocab"}
PKG = Path(__file__).resolve().parents[3] / "market" / "network"


def test_market_network_imports_only_numpy_scipy_opendss():
    stdlib = set(sys.stdlib_module_names)
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED or top in stdlib, f"{path.name} imports {name}"
                if top == "market":
                    assert name.startswith("market.network"), f"{path.name} imports {name}"
