"""`colorgrid day`'s report: PNGs drawn from the run's CSVs and `report.html`, one self-contained page
(the PNGs inline as base64 data URIs, no script, no external style or font: it opens offline).

    paths = write_pngs(out_dir, tiers)           # dlmp_heatmap, vpp_bid_cleared, dispatch_delivered,
                                                 # tracking, money_per_tier (.png)
    write_html(out_dir / "report.html", figures, units, paths)

Every picture is a view of a CSV in the same folder (dlmp.csv, curve.csv, dispatch.csv,
tracking.csv, money_per_tier.csv); the table of figures is the `figures` dict that summary.json holds.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

PNGS = {
    "dlmp_heatmap.png": "DLMP per location and interval (dlmp.csv)",
    "vpp_bid_cleared.png": "VPP bid vs cleared vs delivered, feeder total per interval (curve.csv, dispatch.csv)",
    "dispatch_delivered.png": "Cleared dispatch vs delivered reduction per location (dispatch.csv)",
    "tracking.png": "Tracking: delivery error and goal-tracking RMS per location (dispatch.csv, tracking.csv)",
    "money_per_tier.png": "Money per tier: revenue at the DLMPs, customers' pay, margin (money_per_tier.csv)",
}
HEADLINE = ("delivery_rms_pct", "delivery_rms_pct_controller_estimate", "violations_after_delivery",
            "ac_delivered_violations", "contract_violations", "unplanned_shed_pct_max", "vpp_cleared_kwh", "vpp_delivered_kwh",
            "vpp_revenue_usd", "vpp_revenue_cleared_usd", "objective_usd", "balance_gap_usd", "rtm", "p2p_ledger_ok",
            "p2p_trades", "p2p_network_charges_usd", "devices", "vpp_locations", "total_s")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def plot_dlmp(out_dir: Path, path: Path) -> None:
    import numpy as np

    table: dict[str, dict[int, float]] = defaultdict(dict)
    for r in _rows(out_dir / "dlmp.csv"):
        table[f"{r['bus']}.{r['phase']}"][int(r["interval"])] = float(r["dlmp_usd_per_mwh"])
    locs = sorted(table, key=lambda loc: (loc.rpartition(".")[2], loc))
    n = 1 + max(max(v) for v in table.values())
    data = np.array([[table[loc].get(t, np.nan) for t in range(n)] for loc in locs])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, max(3.0, min(14.0, 0.12 * len(locs) + 1.5))))
    im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
    step = max(1, len(locs) // 40)
    ax.set_yticks(range(0, len(locs), step), locs[::step], fontsize=6)
    ax.set_xlabel("interval")
    ax.set_ylabel("location (bus.phase, grouped by phase)")
    ax.set_title("DLMP, USD/MWh")
    fig.colorbar(im, ax=ax, label="USD/MWh")
    _save(fig, path)


def plot_bid_cleared(out_dir: Path, path: Path, tiers: Sequence[str]) -> None:
    bid: dict[str, dict[int, float]] = {t: defaultdict(float) for t in tiers}
    for r in _rows(out_dir / "curve.csv"):
        bid[r["tier"]][int(r["interval"])] += float(r["p_kw"])
    cleared, delivered = defaultdict(float), defaultdict(float)
    for r in _rows(out_dir / "dispatch.csv"):
        cleared[int(r["interval"])] += float(r["cleared_kw"])
        delivered[int(r["interval"])] += float(r["delivered_kw"])
    ts = sorted(cleared)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bottom = [0.0] * len(ts)
    for tier in tiers:
        vals = [bid[tier].get(t, 0.0) for t in ts]
        ax.bar(ts, vals, bottom=bottom, color=tier if tier in ("green", "yellow") else None, alpha=0.45,
               label=f"bid: {tier}")
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.step(ts, [cleared[t] for t in ts], where="mid", color="k", label="cleared")
    ax.plot(ts, [delivered[t] for t in ts], "o", ms=4, color="tab:red", label="delivered")
    ax.set_xlabel("interval (hour)")
    ax.set_ylabel("demand reduction, kW")
    ax.legend(fontsize=7, ncol=4)
    _save(fig, path)


def plot_dispatch(out_dir: Path, path: Path) -> None:
    rows = _rows(out_dir / "dispatch.csv")
    locs = sorted({r["location"] for r in rows})
    cols = min(4, len(locs))
    nrows = (len(locs) + cols - 1) // cols
    plt = _plt()
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.2 * nrows), squeeze=False, sharex=True)
    for i, loc in enumerate(locs):
        ax = axes[i // cols][i % cols]
        r = sorted((x for x in rows if x["location"] == loc), key=lambda x: int(x["interval"]))
        ax.step([int(x["interval"]) for x in r], [float(x["cleared_kw"]) for x in r], where="mid", label="cleared")
        ax.plot([int(x["interval"]) for x in r], [float(x["delivered_kw"]) for x in r], "o", ms=3, label="delivered")
        ax.set_title(loc, fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(len(locs), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("interval (hour)")
    fig.supylabel("demand reduction, kW")
    _save(fig, path)


def plot_tracking(out_dir: Path, path: Path) -> None:
    import math

    rows = _rows(out_dir / "dispatch.csv")
    track = _rows(out_dir / "tracking.csv")
    locs = sorted({r["location"] for r in rows})
    err = {loc: [float(r["error_kw"]) for r in rows if r["location"] == loc] for loc in locs}
    base = {loc: [float(r["baseline_kw"]) for r in rows if r["location"] == loc] for loc in locs}
    rms = [100.0 * math.sqrt(sum(e * e for e in err[loc]) / len(err[loc])) / (sum(base[loc]) / len(base[loc]))
           for loc in locs]
    trk = [max(float(r["tracking_rms_pct"]) for r in track if r["location"] == loc) for loc in locs]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(locs) + 2), 3.4))
    x = range(len(locs))
    ax.bar([i - 0.2 for i in x], rms, width=0.4, label="delivery RMS over the day (delivered − cleared)")
    ax.bar([i + 0.2 for i in x], trk, width=0.4, label="worst interval: goal-tracking RMS per round")
    ax.axhline(2.0, color="tab:red", lw=0.8, ls="--", label="2 % target")
    ax.set_xticks(list(x), locs, rotation=90, fontsize=6)
    ax.set_ylabel("% of the location's baseline")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_money(out_dir: Path, path: Path) -> None:
    rows = _rows(out_dir / "money_per_tier.csv")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = range(len(rows))
    for k, (col, label) in enumerate((("revenue_usd", "revenue at DLMPs"), ("customer_pay_usd", "customers' pay"),
                                       ("margin_usd", "VPP margin"))):
        ax.bar([i + (k - 1) * 0.27 for i in x], [float(r[col]) for r in rows], width=0.27, label=label)
    ax.set_xticks(list(x), [r["tier"] for r in rows])
    ax.set_ylabel("USD over the day")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.legend(fontsize=7)
    _save(fig, path)


def write_pngs(out_dir: Path, tiers: Sequence[str]) -> list[Path]:
    """Every PNG of `PNGS` drawn from the CSVs in `out_dir`; their paths."""
    out_dir = Path(out_dir)
    draw = {"dlmp_heatmap.png": plot_dlmp, "vpp_bid_cleared.png": lambda o, p: plot_bid_cleared(o, p, tiers),
            "dispatch_delivered.png": plot_dispatch, "tracking.png": plot_tracking, "money_per_tier.png": plot_money}
    paths = []
    for name in PNGS:
        draw[name](out_dir, out_dir / name)
        paths.append(out_dir / name)
    return paths


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def write_html(path: Path, figures: Mapping[str, Any], units: Mapping[str, str], pngs: Sequence[Path],
               title: str = "colorgrid day") -> Path:
    """report.html: the headline figures, each PNG inline (base64), every figure of summary.json."""
    esc = html.escape
    head = [k for k in HEADLINE if k in figures]
    rest = [k for k in sorted(figures) if k not in head]

    def table(keys):
        rows = "".join(f"<tr><td>{esc(k)}</td><td data-figure=\"{esc(k)}\">{esc(_shown(figures[k]))}</td>"
                       f"<td>{esc(units.get(k, ''))}</td></tr>" for k in keys)
        return f"<table><tr><th>figure</th><th>value</th><th>unit</th></tr>{rows}</table>"

    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1100px}td,th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:left;font-size:13px}img{max-width:100%}"
             "td[data-figure]{font-family:monospace}</style></head><body>",
             f"<h1>{esc(title)}</h1><p>Figures from summary.json; pictures drawn from the CSVs in this folder.</p>",
             "<h2>Headline</h2>", table(head)]
    for p in pngs:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(PNGS.get(Path(p).name, Path(p).name))}</h2>"
                     f"<img alt=\"{esc(Path(p).name)}\" src=\"data:image/png;base64,{data}\">")
    parts += ["<h2>Every figure</h2>", table(rest), "</body></html>"]
    Path(path).write_text("\n".join(parts) + "\n")
    return Path(path)
