"""Time series of the day-ahead market: the load shape (a factor on the feeder's own loads) and the
ISO price curve (USD/MWh at the substation), one value per hourly interval.

Shipped defaults: `data/load_shape.csv` (`interval,load_factor`, peak 1.0 at 18:00) and
`data/iso_price.csv` (`interval,price_usd_per_mwh`, a typical day with an evening peak). Both hold 24
hourly values; a horizon of N intervals takes value[t mod 24]. `read_series(path, column, n)` reads
a user's CSV with the same layout (one row per interval 0..n−1, or 24 rows to wrap) and raises
`SeriesError` naming the file, line and column.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
LOAD_SHAPE_CSV = DATA / "load_shape.csv"
ISO_PRICE_CSV = DATA / "iso_price.csv"
LOAD_COLUMN = "load_factor"
PRICE_COLUMN = "price_usd_per_mwh"


class SeriesError(ValueError):
    """A series file that cannot be used (missing column, bad value, wrong length)."""


def read_series(path: str | Path, column: str, intervals: int) -> list[float]:
    """Values of `column` for intervals 0..intervals−1 (a 24-row file wraps: value[t mod 24])."""
    path = Path(path)
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise SeriesError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or column not in reader.fieldnames or "interval" not in reader.fieldnames:
            raise SeriesError(f"{path}: needs columns interval,{column}; has {reader.fieldnames}")
        values: dict[int, float] = {}
        for line, row in enumerate(reader, start=2):
            try:
                t, v = int(row["interval"]), float(row[column])
            except (TypeError, ValueError):
                raise SeriesError(f"{path}:{line}: interval must be an integer and {column} a number, got "
                                  f"{row.get('interval')!r}, {row.get(column)!r}") from None
            if not math.isfinite(v):
                raise SeriesError(f"{path}:{line}: {column} is not finite ({v!r})")
            if t in values:
                raise SeriesError(f"{path}:{line}: interval {t} given twice")
            values[t] = v
    n = len(values)
    if sorted(values) != list(range(n)) or n == 0:
        raise SeriesError(f"{path}: intervals must be 0..N-1, each once (got {sorted(values)[:5]}…)")
    if n != intervals and n != 24:
        raise SeriesError(f"{path}: {n} rows for {intervals} intervals (give {intervals}, or 24 to repeat daily)")
    return [values[t % n] for t in range(intervals)]


def load_shape(intervals: int, path: str | Path | None = None) -> list[float]:
    """The load factor per interval (default: the shipped daily shape); factors must be ≥ 0."""
    out = read_series(path or LOAD_SHAPE_CSV, LOAD_COLUMN, intervals)
    bad = [t for t, v in enumerate(out) if v < 0]
    if bad:
        raise SeriesError(f"{path or LOAD_SHAPE_CSV}: {LOAD_COLUMN} below 0 at interval {bad[0]}")
    return out


def iso_price(intervals: int, path: str | Path | None = None) -> list[float]:
    """The ISO price per interval, USD/MWh (default: the shipped daily curve)."""
    return read_series(path or ISO_PRICE_CSV, PRICE_COLUMN, intervals)
