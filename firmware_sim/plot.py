"""PNG views of a scenario run (matplotlib, Agg backend): a view of timeseries.csv, nothing more."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TIER_COLOURS = {"green": "tab:green", "yellow": "goldenrod", "red": "tab:red", "black": "black"}


def plot_result(res, path: str | Path) -> Path:
    """Goal vs achieved (total), and per tier enabled kW vs the controller's per-tier target."""
    t_min = res.t_s / 60.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    ax1.plot(t_min, res.goal_kw, color="tab:blue", lw=1.0, label="goal")
    ax1.plot(t_min, res.achieved_kw, color="tab:orange", lw=0.8, label="achieved (enabled)")
    warm = res.config.warmup_s / 60.0
    for ax in (ax1, ax2):
        ax.axvspan(0, warm, color="0.92", lw=0)
    m = res.metrics
    title = f"{res.config.scenario}: {res.config.devices} devices"
    if "pjm_score" in m:
        title += f", PJM score {m['pjm_score']:.3f}"
    if "rms_pct_of_capacity" in m:
        title += f", RMS {m['rms_pct_of_capacity']:.2f} % of capacity"
    ax1.set_title(title)
    ax1.set_ylabel("enabled kW")
    ax1.legend(loc="upper right")
    for i, name in enumerate(res.tier_names):
        colour = TIER_COLOURS.get(name, None)
        ax2.plot(t_min, res.enabled_tier_kw[:, i], color=colour, lw=0.9, label=f"{name} enabled")
        ax2.plot(t_min, res.target_tier_kw[:, i], color=colour, lw=0.8, ls="--", label=f"{name} target")
    ax2.set_xlabel("time from start, min (grey: warm-up, not scored)")
    ax2.set_ylabel("kW per tier")
    ax2.legend(loc="upper right", ncol=len(res.tier_names), fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
