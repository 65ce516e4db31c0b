"""Shared reporting for benches: print each figure with its unit, and `--json PATH` writes them.

    rep = Report("fleet", argv)          # parses --json PATH (and keeps the rest for the bench)
    rep.figure("step_ms_per_1m_slices", 31.2, "ms", target="<= 50")
    rep.ratio("speedup_vs_naive", fast_s, slow_s)   # slow/fast, printed as NN.Nx
    rep.done()                            # writes JSON when asked
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time


class Report:
    def __init__(self, name: str, argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None):
        parser = parser or argparse.ArgumentParser(prog=f"python -m bench.{name}")
        parser.add_argument("--json", metavar="PATH", default=None, help="write every figure as JSON")
        self.args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        self.name = name
        self.rows: list[dict] = []
        self._t0 = time.perf_counter()
        print(f"# bench {name}  (python {platform.python_version()}, {platform.machine()})")

    def figure(self, name: str, value: float, unit: str = "", target: str | None = None, note: str = ""):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"bench figure {name} is not finite: {value!r}")
        row = {"name": name, "value": value, "unit": unit}
        if target:
            row["target"] = target
        if note:
            row["note"] = note
        self.rows.append(row)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        extra = f"   (target {target})" if target else ""
        extra += f"   {note}" if note else ""
        print(f"{name:<48} {shown:>14} {unit}{extra}")
        return value

    def ratio(self, name: str, numerator: float, denominator: float, target: str | None = None, note: str = ""):
        """Record numerator/denominator as a ratio (unit 'x')."""
        if denominator <= 0:
            raise ValueError(f"bench ratio {name}: non-positive denominator {denominator}")
        return self.figure(name, numerator / denominator, "x", target=target, note=note)

    def done(self) -> None:
        total = time.perf_counter() - self._t0
        print(f"# bench {self.name} finished in {total:.1f} s")
        if self.args.json:
            with open(self.args.json, "w") as fh:
                json.dump({"bench": self.name, "figures": self.rows, "wall_time_s": total}, fh,
                          indent=2, sort_keys=True)
                fh.write("\n")
