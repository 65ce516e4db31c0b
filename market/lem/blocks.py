"""Block orders, European complex blocks (EUPHEMIA-style) and their paradoxical acceptance check.

Formulation (hooked into `problem.build_dam`):

    variable_block_ratio     r_b ∈ [0, 1]: the accepted share of the block's p_kw (its injection is
                             p_kw·r_b in every interval of its window; the objective pays price·p_kw·n·r_b)
    constraint_block_ratio   MAR_b·a_b ≤ r_b ≤ a_b        (a_b = block_accept ∈ {0, 1}; MAR = 1: r = a)
    constraint_block_family  a_child ≤ a_parent;  Σ_{b ∈ g} a_b ≤ 1 per exclusive group g

After pricing (`block_report`), every block's surplus at the DLMPs of the pricing run is

    S_b = Δt/1000 · Σ_t (π_b,t − c_b)·p_b,t        (π_b: its share-weighted DLMP, p_b the cleared kW)

An accepted block whose family surplus (S_b plus that of its accepted descendants: a child's surplus
may carry its parent's loss) is below −tol is paradoxically accepted (paid less than its price);
`clear_without_paradox` then excludes it (a cut a_b = 0, as EUPHEMIA does, the worst one first) and
clears again until none is left. A rejected block with Σ_t (π_b,t − c_b)·p_kw > tol over its window is
paradoxically rejected: it would have earned that much at these prices (its opportunity cost,
reported in blocks.csv); the indivisibility that rejects it is why such blocks exist.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pe

SURPLUS_TOL_USD = 1e-6


def variable_block_ratio(m) -> None:
    m.block_ratio = pe.Var(range(len(m.market.blocks)), bounds=(0.0, 1.0))


def constraint_block_ratio(m) -> None:
    bl = m.market.blocks
    idx = range(len(bl))
    m.constraint_block_ratio_max = pe.Constraint(idx, rule=lambda _, j: m.block_ratio[j] <= m.block_accept[j])
    m.constraint_block_ratio_min = pe.Constraint(
        idx, rule=lambda _, j: m.block_ratio[j] >= bl[j].min_acceptance_ratio * m.block_accept[j])


def constraint_block_family(m) -> None:
    bl = m.market.blocks
    pos = {b.id: j for j, b in enumerate(bl)}
    links = [(j, pos[b.parent]) for j, b in enumerate(bl) if b.parent is not None and b.parent in pos]
    m.constraint_block_link = pe.Constraint(range(len(links)),
                                            rule=lambda _, i: m.block_accept[links[i][0]] <= m.block_accept[links[i][1]])
    groups: dict[str, list[int]] = {}
    for j, b in enumerate(bl):
        if b.exclusive_group is not None:
            groups.setdefault(b.exclusive_group, []).append(j)
    names = sorted(g for g, members in groups.items() if len(members) > 1)
    m.constraint_block_exclusive = pe.Constraint(names, rule=lambda _, g: sum(m.block_accept[j] for j in groups[g]) <= 1)


@dataclass(frozen=True)
class BlockResult:
    id: str
    status: str                  # accepted | partially_accepted | rejected | paradoxically_rejected | excluded_paradoxical
    ratio: float                 # accepted share of p_kw
    surplus_usd: float           # at the DLMPs, of what was accepted
    opportunity_cost_usd: float  # a rejected block: what full acceptance would have earned at these prices (> 0: paradoxical)
    avg_price_usd_per_mwh: float  # the quantity-weighted DLMP over its window


def _price(prices, net, location: str) -> np.ndarray:
    return sum(share * prices.at(loc) for loc, share in net.split(location))


def block_report(market, net, clearing, excluded: set[str] = frozenset()) -> list[BlockResult]:
    """Every block's acceptance and surplus at the clearing's DLMPs (module docstring)."""
    k = market.interval_h / 1000.0
    out = []
    for b in market.blocks:
        win = slice(b.first_interval, b.first_interval + b.n_intervals)
        pi = _price(clearing.prices, net, b.location)[win]
        p = np.asarray(clearing.schedule_kw[b.id], float)[win]
        ratio = float(p[0] / b.p_kw)
        avg = float(np.mean(pi))
        if ratio > 1e-9:
            surplus = k * float((pi - b.price_usd_per_mwh) @ p)
            status = "accepted" if ratio > 1 - 1e-9 else "partially_accepted"
            out.append(BlockResult(b.id, status, ratio, surplus, 0.0, avg))
        else:
            opp = k * b.p_kw * float(np.sum(pi - b.price_usd_per_mwh))
            status = "excluded_paradoxical" if b.id in excluded else (
                "paradoxically_rejected" if opp > SURPLUS_TOL_USD else "rejected")
            out.append(BlockResult(b.id, status, 0.0, 0.0, max(opp, 0.0), avg))
    return out


def family_surplus(market, report: list[BlockResult]) -> dict[str, float]:
    """{accepted block id: its surplus + that of its accepted descendants} (a child's surplus may carry
    its parent's loss, as in EUPHEMIA; not the other way round)."""
    by = {r.id: r for r in report}
    children: dict[str, list[str]] = {}
    for b in market.blocks:
        if b.parent is not None:
            children.setdefault(b.parent, []).append(b.id)

    def total(x: str) -> float:
        return by[x].surplus_usd + sum(total(c) for c in children.get(x, []) if by[c].ratio > 1e-9)
    return {r.id: total(r.id) for r in report if r.ratio > 1e-9}


def paradoxically_accepted(market, report: list[BlockResult], tol: float = SURPLUS_TOL_USD) -> list[BlockResult]:
    """Accepted blocks whose family surplus at the DLMPs is negative."""
    fam = family_surplus(market, report)
    return [r for r in report if r.id in fam and fam[r.id] < -tol]


def clear_without_paradox(market, clear, max_rounds: int | None = None):
    """Clear with `clear(fixed) -> (clearing, net, result)` (e.g. a closure over clear_dam or clear_with_ac,
    `fixed` the block acceptances held at 0), then exclude the worst paradoxically accepted block and
    clear again, until there is none. Returns (result, block report, excluded ids, rounds)."""
    pos = {b.id: j for j, b in enumerate(market.blocks)}
    excluded: list[str] = []
    rounds = max_rounds if max_rounds is not None else len(market.blocks) + 1
    for n in range(1, rounds + 1):
        fixed = {f"block_accept[{pos[x]}]": 0.0 for x in excluded}
        clearing, net, result = clear(fixed)
        report = block_report(market, net, clearing, set(excluded))
        pab = paradoxically_accepted(market, report)
        if not pab:
            return result, report, excluded, n
        excluded.append(min(pab, key=lambda r: r.surplus_usd).id)
    raise RuntimeError(f"paradoxically accepted blocks left after {rounds} clearings: "
                       f"{[r.id for r in paradoxically_accepted(market, report)]}")
