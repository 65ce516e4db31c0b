"""Results as files: the one `--out DIR` convention every computing command follows.

A command builds a `RunOutput`, writes its data as CSV tables (header line, units in column
names, one row per record), records every figure it prints with `figure()`, and calls
`finish()` to write `summary.json`:

    {"command": ..., "params": {...}, "seed": ..., "versions": {...},
     "figures": {name: value}, "units": {name: unit}, "files": [...],
     "wall": {"started_utc_ms": ..., "wall_time_s": ...}}

Everything except the `wall` block is a pure function of the inputs and the seed: floats are
written with Python's shortest round-trip repr, keys sorted, so the same run gives byte-identical
CSV and JSON. NaN and infinities are refused (fail loudly: a NaN is never an answer).
"""
from __future__ import annotations

import csv
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from colorgrid import __version__


class ResultsError(ValueError):
    """A value that cannot be written as a result (NaN, infinity, unknown type)."""


def add_out_argument(parser, required: bool = False) -> None:
    parser.add_argument(
        "--out", metavar="DIR", default=None, required=required,
        help="write results (CSV tables, summary.json, PNGs) to this folder",
    )


def clean_value(value: Any, where: str) -> Any:
    """Convert numpy scalars/arrays to plain JSON-able values; refuse NaN/inf naming `where`."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ResultsError(f"{where}: non-finite value {value!r}")
        return value
    if isinstance(value, Mapping):
        return {str(k): clean_value(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return clean_value(value.tolist(), where)
    if isinstance(value, Path):
        return str(value)
    raise ResultsError(f"{where}: cannot write value of type {type(value).__name__}")


def _cell(value: Any, where: str) -> str:
    value = clean_value(value, where)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def versions() -> dict[str, str]:
    """Installed versions of the distributions a run depends on (read from metadata, no imports)."""
    from importlib import metadata

    found = {"colorgrid": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scipy", "pyomo", "highspy", "opendssdirect.py", "paho-mqtt", "cryptography"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # not installed: simply not reported
            continue
    return found


class RunOutput:
    """Collects one run's tables and figures; writes nothing when `out_dir` is None."""

    def __init__(self, out_dir: str | Path | None, command: str, params: Mapping[str, Any],
                 seed: int | None = None) -> None:
        self.out_dir = Path(out_dir) if out_dir else None
        self.command = command
        self.params = clean_value(dict(params), "params")
        self.seed = seed
        self.figures: dict[str, Any] = {}
        self.units: dict[str, str] = {}
        self.files: list[str] = []
        self._t0 = time.perf_counter()
        self._started_ms = int(time.time() * 1000)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.out_dir is not None

    def path(self, name: str) -> Path | None:
        """Path for an extra file (a PNG, a ledger database); None when --out was not given."""
        if self.out_dir is None:
            return None
        if name not in self.files:
            self.files.append(name)
        return self.out_dir / name

    def figure(self, name: str, value: Any, unit: str = "") -> Any:
        """Record a printed figure (goes to summary.json `figures`, unit to `units`)."""
        self.figures[name] = clean_value(value, f"figure {name}")
        if unit:
            self.units[name] = unit
        return value

    def figures_from(self, mapping: Mapping[str, Any], units: Mapping[str, str] | None = None) -> None:
        for key, value in mapping.items():
            self.figure(key, value, (units or {}).get(key, ""))

    def write_csv(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path | None:
        """Write a table; `rows` are sequences aligned with `columns`."""
        path = self.path(name)
        if path is None:
            return None
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            for i, row in enumerate(rows):
                if len(row) != len(columns):
                    raise ResultsError(f"{name} row {i}: {len(row)} values for {len(columns)} columns")
                writer.writerow([_cell(v, f"{name}[{i}].{c}") for v, c in zip(row, columns)])
        return path

    def write_columns(self, name: str, columns: Mapping[str, Sequence[Any]]) -> Path | None:
        """Write a table given column-name -> equal-length sequence (numpy arrays welcome)."""
        names = list(columns)
        data = [list(columns[c].tolist() if hasattr(columns[c], "tolist") else columns[c]) for c in names]
        lengths = {len(col) for col in data}
        if len(lengths) > 1:
            raise ResultsError(f"{name}: columns of unequal length {sorted(lengths)}")
        return self.write_csv(name, names, zip(*data))

    def summary(self, wall_time_s: float | None = None) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0 if wall_time_s is None else wall_time_s
        return {
            "command": self.command,
            "params": self.params,
            "seed": self.seed,
            "versions": versions(),
            "figures": self.figures,
            "units": self.units,
            "files": sorted(set(self.files) | {"summary.json"}),
            "wall": {"started_utc_ms": self._started_ms, "wall_time_s": round(wall, 6)},
        }

    def finish(self) -> dict[str, Any]:
        """Write summary.json (when --out was given) and return the summary dict."""
        data = self.summary()
        if self.out_dir is not None:
            text = json.dumps(data, sort_keys=True, indent=2, allow_nan=False)
            (self.out_dir / "summary.json").write_text(text + "\n")
        return data
