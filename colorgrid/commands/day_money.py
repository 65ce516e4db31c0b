"""`colorgrid day`'s money: the VPP paid at the DLMPs for what it delivered, and per tier what it
earned, what it owes its customers by their contracts and its margin."""
from __future__ import annotations


def vpp_settlement(rows, prices, interval_h: float) -> tuple[list[list], float]:
    """Per location·interval [location, interval, dlmp, cleared_kw, delivered_kw, cleared_usd,
    delivered_usd]; and Σ delivered_usd = Σ delivered × DLMP × Δt (USD)."""
    col = {loc: j for j, loc in enumerate(prices.locations)}
    out, revenue = [], 0.0
    for r in rows:
        dlmp = float(prices.dlmp_usd_per_mwh[col[r.location], r.interval])
        usd = r.delivered_kw * dlmp * interval_h / 1000.0
        revenue += usd
        out.append([r.location, r.interval, dlmp, r.cleared_kw, r.delivered_kw,
                    r.cleared_kw * dlmp * interval_h / 1000.0, usd])
    return out, revenue


def money_per_tier(plan, portfolio, rows, prices, interval_h: float) -> list[list]:
    """Per sheddable tier [tier, delivered_kwh, revenue_usd, events, customer_pay_usd, margin_usd]:
    the delivered reduction split over tiers as the plan split it (shed order), its revenue at the
    DLMPs, the customers' pay by their contracts (per kWh delivered and per event = run of
    consecutive curtailed intervals) and the VPP's margin; then a row "unplanned": what the fleet
    delivered (and earned) in intervals without a dispatched reduction (the refractory tail of the
    interval before, switching noise), so the rows add up to the VPP's revenue."""
    col = {loc: j for j, loc in enumerate(prices.locations)}
    out = []
    for tier in plan.tiers:
        kwh = usd = pay = 0.0
        events = 0
        for r in rows:
            red = plan.reduction_kw.get((r.location, r.interval), 0.0)
            part = plan.tier_kw.get((r.location, tier, r.interval), 0.0)
            if red <= 1e-9 or part <= 0.0:
                continue
            share = r.delivered_kw * part / red
            kwh += share * interval_h
            usd += share * float(prices.dlmp_usd_per_mwh[col[r.location], r.interval]) * interval_h / 1000.0
            pay += share * interval_h * portfolio.holding(r.location, tier).contract.compensation_usd_per_kwh
        for loc in plan.locations():
            ts = plan.curtailed_intervals(loc, tier)
            n_ev = sum(1 for i, t in enumerate(ts) if i == 0 or ts[i - 1] != t - 1)
            events += n_ev
            h = portfolio.holding(loc, tier)
            if h is not None and h.contract is not None:
                pay += n_ev * h.contract.compensation_usd_per_event
        out.append([tier, kwh, usd, events, pay, usd - pay])
    rest = [r for r in rows if plan.reduction_kw.get((r.location, r.interval), 0.0) <= 1e-9]
    kwh = sum(r.delivered_kw for r in rest) * interval_h
    usd = sum(r.delivered_kw * float(prices.dlmp_usd_per_mwh[col[r.location], r.interval]) for r in rest) * interval_h / 1000.0
    out.append(["unplanned", kwh, usd, 0, 0.0, usd])
    return out
