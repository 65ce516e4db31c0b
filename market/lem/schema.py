"""Market data of the local energy market (LEM): participants, their offers and bids, the ISO interface.

One pydantic model tree, `Market`, declared once; its JSON schema ships as
`market/lem/data/offers.schema.json` (`json_schema()` regenerates it; a test keeps the file current).
`load_market(obj)` validates a dict (e.g. a parsed offers.json) and raises `MarketDataError` whose
`.errors` are one line per problem, `path: message`, with the path in the document's own notation
(`offers[12].steps[1].price_usd_per_mwh`).

Conventions: powers in kW (generation positive), energies in kWh, prices in USD/MWh, intervals are
counted from 0 and all last `interval_h` hours. A location is a vocab location id: a bus·phase
`"675.1"` or a whole bus `"675"` (split equally over its phase nodes by the network data).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from vocab.location import LocationError, normalize

SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "offers.schema.json"


def _location(text: str) -> str:
    try:
        return normalize(text)
    except LocationError as exc:
        raise ValueError(str(exc)) from None


Location = Annotated[str, AfterValidator(_location)]
Kw = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Price = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    """One price-quantity step: up to `p_kw` at `price_usd_per_mwh`."""
    price_usd_per_mwh: Price
    p_kw: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class _EnergyLimited(_Strict):
    """Daily energy limits (kWh per day of 24 h from interval 0; a shorter last day keeps the limit):
    generation (offers, units) or consumption (bids) between `daily_energy_min_kwh` and
    `daily_energy_max_kwh` (None: no limit)."""
    daily_energy_min_kwh: Kw | None = None
    daily_energy_max_kwh: Kw | None = None

    @model_validator(mode="after")
    def _energy_range(self):
        lo, hi = self.daily_energy_min_kwh, self.daily_energy_max_kwh
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"daily_energy_min_kwh={lo} above daily_energy_max_kwh={hi}")
        return self


class _Reactive(_Strict):
    """Reactive capability (where given): q_kvar in [q_min_kvar, q_max_kvar] in every interval (a unit:
    only while on), independent of p (a box, no PQ circle), at no cost. None: no reactive dispatch."""
    q_min_kvar: Annotated[float, Field(allow_inf_nan=False)] | None = None
    q_max_kvar: Annotated[float, Field(allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _q_range(self):
        lo, hi = self.q_min_kvar, self.q_max_kvar
        if (lo is None) != (hi is None):
            raise ValueError("give both q_min_kvar and q_max_kvar, or neither")
        if lo is not None and lo > hi:
            raise ValueError(f"q_min_kvar={lo} above q_max_kvar={hi}")
        return self


class StepOffer(_EnergyLimited, _Reactive):
    """Generation offered in steps, every interval; `p_max_kw[t]` caps the total (e.g. a PV forecast)."""
    id: str = Field(min_length=1)
    location: Location
    steps: list[Step] = Field(min_length=1)
    p_max_kw: list[Kw] | None = None


class StepBid(_EnergyLimited):
    """Price-responsive demand: takes up to `p_kw` of each step while the price is at most its price."""
    id: str = Field(min_length=1)
    location: Location
    steps: list[Step] = Field(min_length=1)


class BlockOffer(_Strict):
    """A block: `p_kw` in each of `n_intervals` intervals from `first_interval`, or nothing. European
    complex blocks: accepted at a share r ∈ [min_acceptance_ratio, 1] of `p_kw` in every interval of its
    window (1: all or nothing); `parent`: the id of a block without whose acceptance this one is not
    accepted; `exclusive_group`: at most one block of the group is accepted."""
    id: str = Field(min_length=1)
    location: Location
    price_usd_per_mwh: Price
    p_kw: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    first_interval: int = Field(ge=0)
    n_intervals: int = Field(ge=1)
    min_acceptance_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    parent: str | None = None
    exclusive_group: str | None = None


class BilateralSchedule(_Strict):
    """A fixed bilateral schedule: `p_kw[t]` injected at `from_location` and withdrawn at `to_location`
    in every interval; it pays the DLMP difference (to − from) as a network charge."""
    id: str = Field(min_length=1)
    from_location: Location
    to_location: Location
    p_kw: list[Kw] = Field(min_length=1)

    @model_validator(mode="after")
    def _ends(self) -> "BilateralSchedule":
        if self.from_location == self.to_location:
            raise ValueError(f"from_location and to_location are both {self.from_location!r}")
        return self


class Storage(_Reactive):
    """A battery: never charges and discharges in the same interval (a binary mode per interval).
    SoC e_t = e_{t−1} + η_c·charge·Δt − discharge·Δt/η_d, within [soc_min_kwh, e_max_kwh];
    the last interval ends with at least `soc_final_min_kwh` (None: the initial SoC)."""
    id: str = Field(min_length=1)
    location: Location
    p_charge_max_kw: Kw
    p_discharge_max_kw: Kw
    e_max_kwh: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    soc_min_kwh: Kw = 0.0
    soc_initial_kwh: Kw
    soc_final_min_kwh: Kw | None = None
    eta_charge: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    eta_discharge: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    discharge_cost_usd_per_mwh: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _soc(self) -> "Storage":
        for name in ("soc_initial_kwh", "soc_final_min_kwh"):
            v = getattr(self, name)
            if v is not None and not self.soc_min_kwh <= v <= self.e_max_kwh:
                raise ValueError(f"{name}={v} outside [soc_min_kwh, e_max_kwh] = [{self.soc_min_kwh}, {self.e_max_kwh}]")
        return self


class CommitmentUnit(_EnergyLimited, _Reactive):
    """A dispatchable unit with commitment: on/off per interval, p in [p_min_kw, p_max_kw] when on,
    minimum up/down times in intervals, start-up cost per start, no-load cost per hour on.
    `initial_on`: status before interval 0 (held long enough that no min up/down time carries over)."""
    id: str = Field(min_length=1)
    location: Location
    p_min_kw: Kw
    p_max_kw: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    price_usd_per_mwh: Price
    no_load_usd_per_h: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    startup_usd: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    min_up_intervals: int = Field(default=1, ge=1)
    min_down_intervals: int = Field(default=1, ge=1)
    initial_on: bool = False

    @model_validator(mode="after")
    def _range(self) -> "CommitmentUnit":
        if self.p_min_kw > self.p_max_kw:
            raise ValueError(f"p_min_kw={self.p_min_kw} above p_max_kw={self.p_max_kw}")
        return self


class Iso(_Strict):
    """The substation as the ISO interface: import priced at `import_price_usd_per_mwh[t]`, export
    paid `export_price_usd_per_mwh[t]` (None: the import price; never above it)."""
    import_price_usd_per_mwh: list[Price] = Field(min_length=1)
    export_price_usd_per_mwh: list[Price] | None = None
    import_max_kw: Kw | None = None
    export_max_kw: Kw | None = None


class Penalties(_Strict):
    """Slack prices, a ladder: unserved/spilled energy (the price cap / floor) > line overload >
    voltage violation. None: line = half the price cap; voltage as given."""
    line_usd_per_mwh: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    voltage_usd_per_pu_h: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 2.0e5


class Market(_Strict):
    """One market: `intervals` × `interval_h` hours, its participants and the ISO interface."""
    intervals: int = Field(ge=1)
    interval_h: Annotated[float, Field(gt=0.0, le=24.0)] = 1.0
    price_cap_usd_per_mwh: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 5000.0
    price_floor_usd_per_mwh: Annotated[float, Field(le=0.0, allow_inf_nan=False)] = -500.0
    iso: Iso
    offers: list[StepOffer] = []
    bids: list[StepBid] = []
    blocks: list[BlockOffer] = []
    storage: list[Storage] = []
    units: list[CommitmentUnit] = []
    bilaterals: list[BilateralSchedule] = []
    penalties: Penalties = Penalties()


class MarketDataError(ValueError):
    """Invalid market data; `.errors` holds one `path: message` line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} error(s) in market data:\n" + "\n".join(self.errors))


def field_path(loc: tuple) -> str:
    """('offers', 12, 'steps', 1, 'price_usd_per_mwh') -> 'offers[12].steps[1].price_usd_per_mwh'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def error_lines(exc: ValidationError) -> list[str]:
    """One line per pydantic error: `path: message`."""
    return [f"{field_path(e['loc'])}: {e['msg']}" for e in exc.errors()]


def _consistency(m: Market) -> list[str]:
    """Checks across fields: horizon lengths, price range, block windows, unique ids."""
    errs: list[str] = []
    lo, hi = m.price_floor_usd_per_mwh, m.price_cap_usd_per_mwh

    def price(path: str, v: float) -> None:
        if not lo <= v <= hi:
            errs.append(f"{path}: {v} outside [price_floor, price_cap] = [{lo}, {hi}]")

    for name in ("import_price_usd_per_mwh", "export_price_usd_per_mwh"):
        series = getattr(m.iso, name)
        if series is not None and len(series) != m.intervals:
            errs.append(f"iso.{name}: {len(series)} values for {m.intervals} intervals")
    exp = m.iso.export_price_usd_per_mwh
    if exp is not None:
        for t, (e, i) in enumerate(zip(exp, m.iso.import_price_usd_per_mwh)):
            if e > i:
                errs.append(f"iso.export_price_usd_per_mwh[{t}]: {e} above the import price {i}")
    for family in ("offers", "bids"):
        for k, o in enumerate(getattr(m, family)):
            for s, st in enumerate(o.steps):
                price(f"{family}[{k}].steps[{s}].price_usd_per_mwh", st.price_usd_per_mwh)
            cap = getattr(o, "p_max_kw", None)
            if cap is not None and len(cap) != m.intervals:
                errs.append(f"{family}[{k}].p_max_kw: {len(cap)} values for {m.intervals} intervals")
    for k, b in enumerate(m.blocks):
        price(f"blocks[{k}].price_usd_per_mwh", b.price_usd_per_mwh)
        if b.first_interval + b.n_intervals > m.intervals:
            errs.append(f"blocks[{k}].n_intervals: window {b.first_interval}..{b.first_interval + b.n_intervals - 1}"
                        f" ends after the last interval {m.intervals - 1}")
    for k, u in enumerate(m.units):
        price(f"units[{k}].price_usd_per_mwh", u.price_usd_per_mwh)
    errs += _block_families(m) + _energy_limits(m)
    for k, b in enumerate(m.bilaterals):
        if len(b.p_kw) != m.intervals:
            errs.append(f"bilaterals[{k}].p_kw: {len(b.p_kw)} values for {m.intervals} intervals")
    seen: dict[str, str] = {}
    for family in ("offers", "bids", "blocks", "storage", "units", "bilaterals"):
        for k, o in enumerate(getattr(m, family)):
            where = f"{family}[{k}].id"
            if o.id in seen:
                errs.append(f"{where}: {o.id!r} already used by {seen[o.id]}")
            seen.setdefault(o.id, where)
    return errs


def _block_families(m: Market) -> list[str]:
    """Parents name blocks, no block is its own ancestor."""
    errs = []
    ids = {b.id: b for b in m.blocks}
    for k, b in enumerate(m.blocks):
        if b.parent is None:
            continue
        if b.parent not in ids:
            errs.append(f"blocks[{k}].parent: no block {b.parent!r}")
            continue
        seen, at = {b.id}, ids[b.parent]
        while at is not None:
            if at.id in seen:
                errs.append(f"blocks[{k}].parent: the chain of parents from {b.id!r} loops at {at.id!r}")
                break
            seen.add(at.id)
            at = ids.get(at.parent) if at.parent is not None else None
    return errs


def days(m: Market) -> list[list[int]]:
    """The intervals of each day (24 h from interval 0; the last day may be shorter)."""
    per = max(1, int(round(24.0 / m.interval_h)))
    return [list(range(d, min(d + per, m.intervals))) for d in range(0, m.intervals, per)]


def _energy_limits(m: Market) -> list[str]:
    """A daily minimum must be reachable: at most the energy the resource can give (take) that day."""
    errs = []
    for family in ("offers", "bids", "units"):
        for k, r in enumerate(getattr(m, family)):
            lo = r.daily_energy_min_kwh
            if not lo:
                continue
            for d, ts in enumerate(days(m)):
                if family == "units":
                    most = r.p_max_kw * m.interval_h * len(ts)
                else:
                    full = sum(st.p_kw for st in r.steps)
                    cap = getattr(r, "p_max_kw", None)
                    most = m.interval_h * sum(full if cap is None or t >= len(cap) else min(full, cap[t]) for t in ts)
                if lo > most + 1e-9:
                    errs.append(f"{family}[{k}].daily_energy_min_kwh: {lo} above the {most:.6g} kWh it can reach on day {d}")
    return errs


def load_market(obj: dict | str | Path) -> Market:
    """Validate market data (a dict, a JSON string or a path to a .json file); MarketDataError if bad."""
    if isinstance(obj, Path) or (isinstance(obj, str) and obj.lstrip()[:1] != "{"):
        obj = json.loads(Path(obj).read_text())
    elif isinstance(obj, str):
        obj = json.loads(obj)
    try:
        market = Market.model_validate(obj)
    except ValidationError as exc:
        raise MarketDataError(error_lines(exc)) from None
    errs = _consistency(market)
    if errs:
        raise MarketDataError(errs)
    return market


def json_schema() -> dict:
    """The JSON schema of offers.json, generated from the models."""
    return Market.model_json_schema()


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return path
