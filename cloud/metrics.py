"""Tracking and fleet metrics (numpy). All functions refuse to return NaN (MetricsError instead).

* RMS tracking error as % of the regulation capacity:
      rms_pct = 100 · sqrt(mean((achieved - goal)²)) / capacity_kw
* PJM-style regulation performance score (PJM Manual 12 scheme, ARCHITECTURE §2). Signal and
  response are normalized (-1…1, i.e. (kW - base) / capacity) and averaged into 10-s samples;
  the run is cut into 5-min windows (30 samples). In each window, for every shift δ of the
  response in [0, 5 min] (10-s steps; limited by the data available after the window):
      correlation(δ) = Pearson r(signal[w], response[w + δ])      (clipped to [0, 1])
      delay(δ)       = |(δ - 5 min) / 5 min|
  the δ maximising correlation + delay is kept;
      precision = 1 - mean_w |response - signal| / mean_hour |signal|   (unshifted, clipped [0, 1])
  where mean_hour |signal| is the mean absolute signal of the clock hour of the run the window
  lies in (PJM's hourly average). Window score = (correlation + delay + precision) / 3; the
  score is the mean over windows (windows with a constant signal, where r is undefined, are
  skipped and counted). 0.75 passes PJM qualification.
* Fairness: per tier, the standard deviation over devices of the fraction of time the device's
  slice of that tier was enabled; the headline is the largest over the non-black tiers.
* Cycling: slice switches per device per hour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MetricsError(ValueError):
    """A metric that cannot be computed from the given data (never returned as NaN)."""


def rms_pct_of_capacity(goal_kw, achieved_kw, capacity_kw: float) -> float:
    g, a = np.asarray(goal_kw, float), np.asarray(achieved_kw, float)
    if g.shape != a.shape or g.size == 0:
        raise MetricsError(f"goal and achieved must be equal non-empty arrays, got {g.shape} {a.shape}")
    if not capacity_kw > 0:
        raise MetricsError(f"capacity_kw must be > 0, got {capacity_kw!r}")
    return float(100.0 * np.sqrt(np.mean((a - g) ** 2)) / capacity_kw)


def block_means(values, t_s, block_s: float) -> np.ndarray:
    """Means of `values` over consecutive `block_s` blocks of `t_s` (only complete blocks)."""
    v, t = np.asarray(values, float), np.asarray(t_s, float)
    b = np.floor((t - t[0]) / block_s + 1e-9).astype(np.int64)
    n_blocks = int(np.floor((t[-1] - t[0] + (t[1] - t[0] if t.size > 1 else block_s)) / block_s + 1e-9))
    keep = b < n_blocks
    sums = np.bincount(b[keep], weights=v[keep], minlength=n_blocks)
    counts = np.bincount(b[keep], minlength=n_blocks)
    if n_blocks == 0 or np.any(counts == 0):
        raise MetricsError(f"samples do not cover every {block_s} s block")
    return sums / counts


@dataclass(frozen=True)
class PjmScore:
    score: float
    correlation: float
    delay: float
    precision: float
    windows: int
    skipped_windows: int


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    sx, sy = x.std(), y.std()
    if sx < 1e-12:
        return None
    if sy < 1e-12:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def pjm_score(signal, response, t_s, sample_s: float = 10.0, window_s: float = 300.0,
              max_shift_s: float = 300.0, hour_s: float = 3600.0) -> PjmScore:
    """PJM-style score of a normalized `response` to a normalized `signal`, both sampled at `t_s`."""
    sig = block_means(signal, t_s, sample_s)
    resp = block_means(response, t_s, sample_s)
    per_win = int(round(window_s / sample_s))
    max_shift = int(round(max_shift_s / sample_s))
    per_hour = int(round(hour_s / sample_s))
    n_win = sig.size // per_win
    if n_win == 0:
        raise MetricsError(f"need at least one {window_s:g} s window, got {sig.size * sample_s:g} s")
    hour_abs = {h: float(np.mean(np.abs(sig[h * per_hour:(h + 1) * per_hour])))
                for h in range((sig.size + per_hour - 1) // per_hour)}
    rows = []
    skipped = 0
    for w in range(n_win):
        s0 = w * per_win
        x = sig[s0:s0 + per_win]
        best = None
        for j in range(0, min(max_shift, sig.size - s0 - per_win) + 1):
            r = _pearson(x, resp[s0 + j:s0 + j + per_win])
            if r is None:
                break
            corr = min(max(r, 0.0), 1.0)
            delay = abs((j * sample_s - max_shift_s) / max_shift_s)
            if best is None or corr + delay > best[0] + best[1]:
                best = (corr, delay)
        if best is None:
            skipped += 1
            continue
        denom = hour_abs[s0 // per_hour]
        err = float(np.mean(np.abs(resp[s0:s0 + per_win] - x)))
        precision = min(max(1.0 - err / denom, 0.0), 1.0) if denom > 0 else 0.0
        rows.append((best[0], best[1], precision))
    if not rows:
        raise MetricsError("signal constant in every window: PJM score undefined")
    arr = np.asarray(rows)
    corr, delay, prec = (float(v) for v in arr.mean(axis=0))
    return PjmScore(score=float(arr.mean()), correlation=corr, delay=delay, precision=prec,
                    windows=len(rows), skipped_windows=skipped)


def on_time_std_per_tier(on_time_fraction, slice_kw=None) -> np.ndarray:
    """(k,) std over devices of the on-time fraction of each tier's slices (devices whose slice
    has no kW are left out; a tier with no such device gets 0)."""
    f = np.asarray(on_time_fraction, float)
    if f.ndim != 2:
        raise MetricsError("on_time_fraction must be (n_devices, k)")
    mask = np.ones_like(f, bool) if slice_kw is None else np.asarray(slice_kw) > 0
    out = np.zeros(f.shape[1])
    for i in range(f.shape[1]):
        vals = f[mask[:, i], i]
        out[i] = float(vals.std()) if vals.size else 0.0
    return out


def fairness_on_time_std(on_time_fraction, slice_kw=None) -> float:
    """Largest per-tier on-time std over the non-black tiers (0 with a single tier)."""
    per_tier = on_time_std_per_tier(on_time_fraction, slice_kw)
    return float(per_tier[:-1].max()) if per_tier.size > 1 else 0.0


def switches_per_device_hour(switches, duration_s: float) -> float:
    sw = np.asarray(switches, float)
    if sw.size == 0 or not duration_s > 0:
        raise MetricsError("need devices and a positive duration")
    return float(sw.sum() / sw.size / (duration_s / 3600.0))


def settling_time_s(t_s, goal_kw, achieved_kw, t_step_s: float, tol_kw: float) -> float:
    """Time after `t_step_s` from which |achieved - goal| <= tol_kw until the end of the data.

    Raises MetricsError when the error is still above tolerance at the last sample."""
    t, g, a = (np.asarray(v, float) for v in (t_s, goal_kw, achieved_kw))
    after = t >= t_step_s
    bad = after & (np.abs(a - g) > tol_kw)
    if not after.any():
        raise MetricsError("no samples after the step")
    if bad[-1]:
        raise MetricsError("error above tolerance at the end of the run: not settled")
    if not bad.any():
        return 0.0
    last_bad = int(np.flatnonzero(bad)[-1])
    return float(t[last_bad + 1] - t_step_s)
