"""ARCHITECTURE §8 "Who may import whom", enforced: every import of every module, read with `ast`.

All `import` / `from` nodes count, wherever they are (module level, inside functions, under
`if TYPE_CHECKING`); relative imports are resolved against the module's package; `from A import b`
counts as an import of the submodule `A.b` when that module exists. Each module belongs to one
layer (`layer_of`); `RULES` says, per layer, which project modules and which outside modules it may
import. A top-level package or market subpackage without a rule is itself a violation, so a new
package has to be given its place here.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# edge_agent modules whose name contains one of these are CPython-only (edge_agent/README.md).
CPYTHON_ONLY = ("paho", "cpython", "cli", "__main__")

# What the edge_agent core may import from outside the project: what it uses today (binascii,
# hashlib, json, time; machine, network, ntptime and umqtt.simple on boards) plus the other modules
# MicroPython 1.27 offers. No dataclasses, typing, enum, logging, random (the project PRNG is the
# one source of draws), pathlib, urllib, numpy, ...
MICROPYTHON_MODULES = frozenset({
    "binascii", "hashlib", "json", "time", "machine", "network", "ntptime", "umqtt",
    "array", "collections", "errno", "gc", "io", "math", "micropython", "os", "select", "socket",
    "ssl", "struct", "sys",
})
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
ANY = "any"                # every module outside the project


@dataclass(frozen=True)
class Rule:
    may_import: frozenset  # project layers or dotted module prefixes this layer may import
    outside: object        # ANY, or a frozenset of allowed top-level modules outside the project
    why: str               # the §8 sentence, named in every violation
    forbidden_outside: frozenset = frozenset()
    exact: frozenset = frozenset()   # modules allowed by themselves only (not their submodules)


def rule(may_import, outside, why, forbidden_outside=(), exact=()):
    return Rule(frozenset(may_import), outside, why, frozenset(forbidden_outside), frozenset(exact))


MARKET_ROOT = ("market",)  # the bare market package (its __init__), never its subpackages through it
RULES = {
    "edge_agent.core": rule({"edge_agent.core"}, MICROPYTHON_MODULES,
                            "edge_agent core imports nothing of the project and only the "
                            "MicroPython-compatible stdlib subset"),
    "edge_agent.cpython": rule({"edge_agent"}, ANY,
                               "edge_agent's CPython modules import nothing of the project outside "
                               "edge_agent"),
    "vocab": rule({"vocab"}, STDLIB, "vocab is stdlib-only and imports nothing of the project"),
    "cloud": rule({"cloud", "edge_agent", "vocab"}, ANY,
                  "cloud imports edge_agent and vocab, never firmware_sim, market or colorgrid"),
    "firmware_sim": rule({"firmware_sim", "edge_agent", "cloud", "vocab"}, ANY,
                         "firmware_sim imports edge_agent, cloud and vocab, never market or colorgrid"),
    "market": rule({"vocab"}, STDLIB, "the market package itself imports none of its subpackages",
                   exact=MARKET_ROOT),
    "market.network": rule({"market.network", "vocab"}, ANY,
                           "market/network knows nothing of devices, MQTT or the other market "
                           "layers", forbidden_outside={"paho", "aiomqtt", "amqtt"},
                           exact=MARKET_ROOT),
    "market.settlement": rule({"market.settlement", "vocab"}, ANY,
                              "market/settlement imports nothing else of the project",
                              exact=MARKET_ROOT),
    "market.te": rule({"market.te", "market.settlement", "vocab"}, ANY,
                      "market/te needs only a price lookup and market/settlement",
                      exact=MARKET_ROOT),
    "market.lem": rule({"market.lem", "market.network", "market.settlement", "vocab"},
                       ANY, "market/lem imports market/network and market/settlement",
                       exact=MARKET_ROOT),
    "market.vpp": rule({"market.vpp", "market.lem", "market.network",
                        "market.settlement", "cloud.goals", "cloud.dispatch", "vocab"}, ANY,
                       "market/vpp imports market/lem and hands goals to cloud through the goal "
                       "contract (cloud.goals, cloud.dispatch)", exact=MARKET_ROOT),
    "portal": rule({"portal", "cloud", "edge_agent", "vocab", "market"}, ANY,
                   "portal (the operator surface) sits on cloud's service and reads market results "
                   "through market's public APIs; never firmware_sim or colorgrid"),
    "colorgrid": rule({""}, ANY, "the colorgrid command imports everything"),
    "bench": rule({""}, ANY, "benches import anything"),
    "tests": rule({""}, ANY, "tests import anything"),
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.layer} imports {self.target}: {self.why}"


def project_packages(root: Path) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")}


def layer_of(module: str) -> str:
    """The layer of a dotted module name of the project (a RULES key, or an unknown name)."""
    parts = module.split(".")
    if parts[0] == "edge_agent":
        cpython = len(parts) > 1 and any(bad in parts[1] for bad in CPYTHON_ONLY)
        return "edge_agent.cpython" if cpython else "edge_agent.core"
    if parts[0] == "market" and len(parts) > 1:
        return "market." + parts[1]
    return parts[0]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str, root: Path) -> bool:
    base = root.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path):
    """(line, absolute dotted module) for every import node of the module at `path`."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if alias.name != "*" and _exists(sub, root) else target


def _allowed(rule_: Rule, target: str, packages: set[str]) -> bool:
    top = target.split(".")[0]
    if top in packages:
        layer = layer_of(target)
        return target in rule_.exact or any(entry == "" or entry == layer or target == entry or target.startswith(entry + ".")
                   for entry in rule_.may_import)
    if top in rule_.forbidden_outside:
        return False
    return rule_.outside == ANY or top in rule_.outside


def check_tree(root: Path, rules: dict = RULES) -> list[Violation]:
    """Every import against `rules` in every module of every project package under `root`."""
    present = project_packages(root)
    packages = present | {layer.split(".")[0] for layer in rules}   # known even when absent
    found = []
    for package in sorted(present):
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            layer = layer_of(module_name(path, root))
            if layer not in rules:
                found.append(Violation(rel, 1, layer, "-", "no import rule for this package "
                                                              "(give it one in tests/test_import_rules.py)"))
                continue
            for line, target in imports_of(path, root):
                if not _allowed(rules[layer], target, packages):
                    found.append(Violation(rel, line, layer, target, rules[layer].why))
    return found


# ---- the real tree -------------------------------------------------------------------------------
def test_the_tree_follows_section_8():
    violations = check_tree(ROOT)
    assert violations == [], "imports against ARCHITECTURE §8:\n" + "\n".join(map(str, violations))


def test_every_package_and_core_module_is_covered():
    names = {module_name(p, ROOT) for p in ROOT.glob("*/**/*.py")}
    assert layer_of("edge_agent.gateway") == "edge_agent.core" in RULES
    assert layer_of("edge_agent.transport_paho") == layer_of("edge_agent.cli") == "edge_agent.cpython"
    assert {"edge_agent.codec", "edge_agent.keyfile", "edge_agent.urls", "vocab.location"} <= names
    assert {layer_of(p) for p in project_packages(ROOT)} <= set(RULES)


# ---- planted violations: the checker must find each one -------------------------------------------
def plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if str(parent) != ".":
                (root / parent / "__init__.py").touch()
        path.write_text(text)


CLEAN = {
    "edge_agent/gateway.py": "import json\nfrom edge_agent import codec\nfrom . import codec as c\n",
    "edge_agent/codec.py": "import binascii\n\ndef f():\n    import machine\n",
    "edge_agent/transport_paho.py": "import paho.mqtt.client as mqtt\nimport logging\n",
    "edge_agent/cli.py": "import tomllib\nfrom edge_agent import codec, transport_paho\n",
    "vocab/location.py": "import re\n",
    "cloud/rounds.py": "import numpy\nfrom edge_agent import codec\nimport vocab.location\n",
    "cloud/goals.py": "from .rounds import x\n",
    "cloud/dispatch.py": "from . import goals\n",
    "firmware_sim/scenario.py": "from cloud import rounds\nfrom edge_agent.gateway import G\n",
    "market/network/solver.py": "import numpy, scipy\nfrom .ybus import y\nfrom vocab import location\n",
    "market/network/ybus.py": "",
    "market/settlement/ledger.py": "import sqlite3\n",
    "market/te/auction/call.py": "from ...settlement import ledger\nfrom ..prices import p\n",
    "market/te/prices.py": "",
    "market/vpp/bid.py": "from cloud.goals import G\nfrom cloud import dispatch\nfrom market.lem import c\n",
    "market/lem/clear.py": "from market.network import solver\n",
    "portal/api.py": "from cloud import dispatch\nfrom market.settlement import ledger\nimport edge_agent.topics\n",
    "colorgrid/cli.py": "import firmware_sim.scenario, market.te.prices, portal.api\n",
    "bench/fleet.py": "import colorgrid.cli\n",
    "tests/test_x.py": "import firmware_sim.scenario\n",
}

PLANTED = [  # (file, text, the import the checker must name, the layer)
    ("cloud/bad.py", "import firmware_sim.scenario\n", "firmware_sim.scenario", "cloud"),
    ("cloud/bad.py", "from market.te import prices\n", "market.te.prices", "cloud"),
    ("edge_agent/machine.py", "import logging\n", "logging", "edge_agent.core"),
    ("edge_agent/machine.py", "from dataclasses import dataclass\n", "dataclasses", "edge_agent.core"),
    ("edge_agent/machine.py", "import numpy as np\n", "numpy", "edge_agent.core"),
    ("edge_agent/machine.py", "from edge_agent import cli\n", "edge_agent.cli", "edge_agent.core"),
    ("edge_agent/machine.py", "import vocab.location\n", "vocab.location", "edge_agent.core"),
    ("edge_agent/cli.py", "def run():\n    import colorgrid.results\n", "colorgrid.results",
     "edge_agent.cpython"),
    ("edge_agent/transport_paho.py", "from cloud import rounds\n", "cloud.rounds", "edge_agent.cpython"),
    ("market/network/bad.py", "from ..te import prices\n", "market.te.prices", "market.network"),
    ("market/network/bad.py", "import paho.mqtt.client\n", "paho.mqtt.client", "market.network"),
    ("market/network/bad.py", "from edge_agent import codec\n", "edge_agent.codec", "market.network"),
    ("market/settlement/bad.py", "from market.network import solver\n", "market.network.solver",
     "market.settlement"),
    ("market/te/bad.py", "from ..network import ybus\n", "market.network.ybus", "market.te"),
    ("market/te/auction/bad.py", "from ...lem import clear\n", "market.lem.clear", "market.te"),
    ("market/lem/bad.py", "import market.vpp.bid\n", "market.vpp.bid", "market.lem"),
    ("market/vpp/bad.py", "from cloud import rounds\n", "cloud.rounds", "market.vpp"),
    ("market/vpp/bad.py", "import firmware_sim\n", "firmware_sim", "market.vpp"),
    ("firmware_sim/bad.py", "if True:\n    from market.te import prices\n", "market.te.prices",
     "firmware_sim"),
    ("firmware_sim/bad.py", "import colorgrid.cli\n", "colorgrid.cli", "firmware_sim"),
    ("portal/bad.py", "import firmware_sim.scenario\n", "firmware_sim.scenario", "portal"),
    ("portal/bad.py", "from colorgrid import cli\n", "colorgrid.cli", "portal"),
    ("cloud/bad.py", "from portal import api\n", "portal.api", "cloud"),
    ("market/te/bad.py", "import portal.api\n", "portal.api", "market.te"),
    ("firmware_sim/bad.py", "import portal\n", "portal", "firmware_sim"),
    ("vocab/bad.py", "import numpy\n", "numpy", "vocab"),
    ("vocab/bad.py", "from cloud import goals\n", "cloud.goals", "vocab"),
]


def test_clean_tree_has_no_violations(tmp_path):
    plant(tmp_path, CLEAN)
    assert check_tree(tmp_path) == []


@pytest.mark.parametrize("rel, text, target, layer", PLANTED, ids=[f"{c[3]}->{c[2]}" for c in PLANTED])
def test_planted_violation_is_reported(tmp_path, rel, text, target, layer):
    plant(tmp_path, CLEAN)
    plant(tmp_path, {rel: "import json\n" + text})
    line = 1 + next(i for i, text_line in enumerate(text.splitlines(), 1) if "import" in text_line)
    violations = check_tree(tmp_path)
    assert [(v.path, v.line, v.layer, v.target) for v in violations] == [(rel, line, layer, target)]
    assert str(violations[0]).startswith(f"{rel}:{line}: {layer} imports {target}: ")


def test_a_package_without_a_rule_is_reported(tmp_path):
    plant(tmp_path, CLEAN)
    plant(tmp_path, {"operator_ui/app.py": "import cloud\n", "market/ops/x.py": ""})
    found = {(v.path, v.layer) for v in check_tree(tmp_path)}
    assert ("operator_ui/app.py", "operator_ui") in found and ("market/ops/x.py", "market.ops") in found
