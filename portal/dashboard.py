"""The live dashboard: `/` serves static HTML + JS (portal/static) that polls the API every 2 s with
the bearer token the user pastes (kept in the tab's sessionStorage; a 401 shows the login again):
control groups with per-tier enabled kW and gateway health, a goal-vs-achieved chart per group
(`/v1/fleet/rounds`), the gateway twin, and the DLMP heatmap once the results hold `dlmp.csv`.
Charts are hand-drawn inline SVG; no library, no build step, no outside assets: works offline."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).with_name("static")


def mount(app) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
