"""Result files as the controller and the market leave them: a results folder (`ResultsFolder`:
DIR/NAME, else the newest DIR/*/NAME), CSV tables read once per change (`CsvCache`), and
`rounds.csv` followed as it grows (`RoundsLog`). `SourceError` names a file that cannot be read."""
from __future__ import annotations

import csv
import io
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any


class SourceError(RuntimeError):
    """A source file that cannot be read (the message names the file)."""


class ResultsFolder:
    """A results folder: a file NAME is DIR/NAME, else the newest DIR/*/NAME (one run per subfolder)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def find(self, name: str) -> Path | None:
        if self.root is None or not self.root.is_dir():
            return None
        direct = self.root / name
        if direct.is_file():
            return direct
        found = [p for p in self.root.glob(f"*/{name}") if p.is_file()]
        return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p))) if found else None


def _number(text: str) -> Any:
    """A CSV cell as int, float, bool or the text itself (empty -> None)."""
    if text == "":
        return None
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class CsvCache:
    """CSV files read once per (mtime, size): rows as dicts of parsed cells."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, list[str], list[dict]]] = {}

    def read(self, path: Path) -> tuple[list[str], list[dict]]:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            with self._lock:
                hit = self._cache.get(str(path))
            if hit and hit[0] == stamp:
                return hit[1], hit[2]
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                columns = list(reader.fieldnames or [])
                rows = [{k: _number(v or "") for k, v in row.items() if k is not None} for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path.name}: cannot read ({exc})") from None
        with self._lock:
            self._cache[str(path)] = (stamp, columns, rows)
        return columns, rows


MAX_SERIES_ROUNDS = 5_000      # rows per group kept from rounds.csv (2 h 46 min of 2-s rounds)


class RoundsLog:
    """rounds.csv followed as it grows: each read parses only the complete lines appended since
    the previous one (the controller appends and flushes a round at a time) and keeps the newest
    `keep` rows per group. A file replaced, truncated or with another header line (a restart that
    rewrote it, or a newer DIR/*/rounds.csv) is read again from its start."""

    def __init__(self, keep: int = MAX_SERIES_ROUNDS) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, ident) -> None:
        self._ident = ident            # (path, st_dev, st_ino)
        self._header = b""
        self._offset = 0
        self._columns: list[str] = []
        self._rows: dict[str, deque] = {}

    def _update(self, path: Path) -> None:
        """Parse what was appended since the last call (under the lock)."""
        try:
            with path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                ident = (str(path), st.st_dev, st.st_ino)
                header = fh.readline()
                if ident != self._ident or st.st_size < self._offset or header != self._header:
                    self._reset(ident)
                if not header.endswith(b"\n"):
                    return                                  # header not complete yet
                if self._offset == 0:
                    self._columns = next(csv.reader([header.decode("utf-8")]))
                    self._header, self._offset = header, len(header)
                fh.seek(self._offset)
                chunk = fh.read(max(0, st.st_size - self._offset))
            end = chunk.rfind(b"\n") + 1                  # complete lines only; the rest next time
            if not end:
                return
            for cells in csv.reader(io.StringIO(chunk[:end].decode("utf-8"))):
                if len(cells) != len(self._columns):
                    continue                                # a torn or foreign line: skipped
                row = {k: _number(v) for k, v in zip(self._columns, cells)}
                g = str(row.get("group"))
                rows = self._rows.get(g)
                if rows is None:
                    rows = self._rows[g] = deque(maxlen=self.keep)
                rows.append(row)
            self._offset += end
        except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as exc:
            self._reset(None)
            raise SourceError(f"{path.name}: cannot read ({exc})") from None

    def read(self, path: Path, limit: int | None = None) -> tuple[list[str], dict[str, list[dict]]]:
        """(columns, {group: its newest `limit` rows (all kept if None), oldest first})."""
        with self._lock:
            self._update(path)
            n = self.keep if limit is None else max(0, min(limit, self.keep))
            return list(self._columns), {g: list(rows)[-n:] if n else [] for g, rows in self._rows.items()}

    def latest(self, path: Path) -> tuple[list[str], dict[str, dict]]:
        """(columns, {group: its newest row})."""
        with self._lock:
            self._update(path)
            return list(self._columns), {g: rows[-1] for g, rows in self._rows.items() if rows}
