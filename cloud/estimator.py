"""Fleet state estimator for one control group: reports in, predicted (k, 4) state out.

Reports arrive per source (a gateway, or a pre-aggregated region) as (k, 4) kW arrays, columns
EF, ER, DF, DR, stamped with the round they describe (UTC epoch ms, after that round's switching).
They may be missing, late or sampled. The estimator

1. carries each source's last report forward for at most `max_age_s`;
2. scales for missing sources: the used reports are multiplied by W / W_used, where W is the sum
   of every known source's last reported total kW and W_used the same sum over the used sources;
3. predicts to the switching instant of the round being controlled, from the report's round, by
   replaying what the cloud already sent: per round, the expected refractory expiry (step 1) and
   the expected switches E[EF→DR] = p_off·EF, E[DF→ER] = p_on·DF (step 2).

Expiry model: the cloud knows the kW it asked to switch at each round j (inflow to ER / DR). A slice
switched at round j with refractory duration T + U(0, V) becomes flexible at the first round
j + d with d·round_s >= T + U, so  K(d) = |((d-1)·r, d·r] ∩ [T, T+V]| / V  is the probability that
it expires exactly d rounds later and S(d) = P(T + U > d·r) that it is still refractory. The model's
outstanding refractory kW at the report's round is compared with the reported ER/DR and the expiry
scaled by their ratio (clipped to [0, 1]); refractory demand the model did not cause (customer
overrides) is assumed not to expire.

Used identically by the vectorized simulator (sources = simulated gateways, integer ids) and the
MQTT controller (`update_one` with string gateway ids).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cloud.control_law import ControlDecision, check_state, expected_after_switch
from edge_agent import codec
from edge_agent.params import T_DF_S, T_DV_S, T_EF_S, T_EV_S
from edge_agent.states import DF, DR, EF, ER


class EstimatorError(RuntimeError):
    """No usable report (all sources missing or too old), or an invalid report."""


MAX_REFRACTORY_MS = 86_400_000   # a day: bounds the expiry kernel a gateway's birth can ask for


class RefractoryError(ValueError):
    """Refractory parameters announced by a gateway are invalid (message names the field)."""


@dataclass(frozen=True)
class RefractoryParams:
    """Refractory durations, s: ER lasts t_ef + U(0, t_ev), DR lasts t_df + U(0, t_dv).

    Defaults are the agent's (`edge_agent.params.T_EF_S` ...), the one definition."""

    t_ef_s: float = float(T_EF_S)
    t_ev_s: float = float(T_EV_S)
    t_df_s: float = float(T_DF_S)
    t_dv_s: float = float(T_DV_S)

    @classmethod
    def from_params(cls, params: dict) -> "RefractoryParams":
        """From the `params` a gateway announces in its birth (docs/mqtt.md): the int ms keys
        t_ef_ms, t_ev_ms, t_df_ms, t_dv_ms (other keys ignored; a missing key takes the default).
        A value that is not an int in [0, MAX_REFRACTORY_MS] raises RefractoryError naming the
        field (`params.t_ef_ms: not an integer`)."""
        if not isinstance(params, dict):
            raise RefractoryError(f"params: expected an object, got {params!r}")
        values_s = {}
        for name in ("t_ef_s", "t_ev_s", "t_df_s", "t_dv_s"):
            key = name[:-2] + "_ms"
            if key in params:
                try:
                    codec.check_int(params[key], "params." + key, 0, MAX_REFRACTORY_MS)
                except codec.CodecError as exc:
                    raise RefractoryError(str(exc)) from None
                values_s[name] = params[key] / 1000.0
        return cls(**values_s)


def group_refractory(params_list) -> RefractoryParams:
    """One refractory set for a control group from its gateways' birth `params` dicts: the most
    common set; a tie goes to the set seen first; no gateway yet gives the defaults. A bad entry
    raises RefractoryError naming its index (`params[2].t_ev_ms: ...`)."""
    counts: dict[RefractoryParams, int] = {}
    for i, params in enumerate(params_list):
        try:
            found = RefractoryParams.from_params(params)
        except RefractoryError as exc:
            raise RefractoryError(f"params[{i}]{str(exc)[len('params'):]}") from None
        counts[found] = counts.get(found, 0) + 1
    if not counts:
        return RefractoryParams()
    best = max(counts.values())
    return next(p for p, n in counts.items() if n == best)   # dicts keep first-seen order


def expiry_kernel(t_s: float, v_s: float, round_s: float) -> np.ndarray:
    """K[d] = P(a timer of T + U(0, V) started at a round ends exactly d rounds later), d >= 0."""
    n = int(math.ceil((t_s + v_s) / round_s)) + 2
    d = np.arange(n, dtype=float)
    lo = np.maximum((d - 1.0) * round_s, t_s)
    hi = np.minimum(d * round_s, t_s + v_s)
    if v_s <= 0.0:
        k = ((d - 1.0) * round_s < t_s) & (t_s <= d * round_s)
        return k.astype(float)
    return np.clip(hi - lo, 0.0, None) / v_s


@dataclass
class Estimate:
    """Scaled fleet state at the newest used report's round, with bookkeeping."""

    state_kw: np.ndarray      # (k, 4) kW
    used_sources: int
    known_sources: int
    oldest_round_ms: int
    newest_round_ms: int


class FleetEstimator:
    """Carry-forward, scaling and one-round-ahead prediction (see module docstring)."""

    def __init__(self, k: int, round_s: float = 2.0, max_age_s: float = 10.0,
                 refractory: RefractoryParams | None = None, n_sources: int = 0):
        if k < 1:
            raise EstimatorError("k must be >= 1")
        self.k = k
        self.round_ms = int(round(round_s * 1000))
        self.max_age_ms = int(round(max_age_s * 1000))
        r = refractory or RefractoryParams()
        self.kernel_er = expiry_kernel(r.t_ef_s, r.t_ev_s, round_s)
        self.kernel_dr = expiry_kernel(r.t_df_s, r.t_dv_s, round_s)
        self.survive_er = 1.0 - np.cumsum(self.kernel_er)
        self.survive_dr = 1.0 - np.cumsum(self.kernel_dr)
        self.horizon = max(self.kernel_er.size, self.kernel_dr.size)
        self._ids: dict[str, int] = {}
        self.reports = np.zeros((0, k, 4))
        self.ts_ms = np.zeros(0, dtype=np.int64)
        self.seen = np.zeros(0, dtype=bool)
        self._grow(n_sources)
        # per decision round index: (p_on, p_off, inflow_er_kw, inflow_dr_kw)
        self._sent: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._hist: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # ---- reports ---------------------------------------------------------------------
    def _grow(self, n: int) -> None:
        extra = n - self.reports.shape[0]
        if extra > 0:
            self.reports = np.concatenate([self.reports, np.zeros((extra, self.k, 4))])
            self.ts_ms = np.concatenate([self.ts_ms, np.zeros(extra, dtype=np.int64)])
            self.seen = np.concatenate([self.seen, np.zeros(extra, dtype=bool)])

    def update(self, source_idx, reports_kw, ts_ms) -> None:
        """Store reports (m, k, 4) kW for integer sources `source_idx` (m,), round stamp(s) ts_ms.

        An older report never replaces a newer one from the same source."""
        idx = np.asarray(source_idx, dtype=np.int64).reshape(-1)
        rep = np.asarray(reports_kw, dtype=float).reshape(idx.size, self.k, 4)
        if idx.size == 0:
            return
        if np.any(idx < 0):
            raise EstimatorError("source_idx must be >= 0")
        if not np.all(np.isfinite(rep)) or np.any(rep < 0.0):
            raise EstimatorError("reports_kw must be finite and >= 0")
        ts = np.broadcast_to(np.asarray(ts_ms, dtype=np.int64), idx.shape)
        self._grow(int(idx.max()) + 1)
        newer = (~self.seen[idx]) | (ts >= self.ts_ms[idx])
        idx, rep, ts = idx[newer], rep[newer], ts[newer]
        self.reports[idx] = rep
        self.ts_ms[idx] = ts
        self.seen[idx] = True

    def update_one(self, source_id: str, report_kw, ts_ms: int) -> None:
        """One source's report keyed by a string id (e.g. a gateway id from MQTT)."""
        arr = check_state(report_kw, f"report from {source_id}")
        if arr.shape[0] != self.k:
            raise EstimatorError(f"report from {source_id}: {arr.shape[0]} tiers, expected {self.k}")
        if source_id not in self._ids:
            self._ids[source_id] = len(self._ids) if not self._ids else max(self._ids.values()) + 1
        self.update([self._ids[source_id]], arr[None], ts_ms)

    def forget(self, source_id: str) -> None:
        """Drop a source (gateway death): it no longer counts in W."""
        i = self._ids.pop(source_id, None)
        if i is not None:
            self.seen[i] = False

    # ---- estimate --------------------------------------------------------------------
    def _used(self, now_ms: int) -> np.ndarray:
        return self.seen & (self.ts_ms >= now_ms - self.max_age_ms) & (self.ts_ms <= now_ms)

    def estimate(self, now_ms: int) -> Estimate:
        """Scaled sum of the usable reports (no prediction)."""
        used = self._used(now_ms)
        if not used.any():
            raise EstimatorError(f"no usable report at {now_ms} (max age {self.max_age_ms} ms)")
        totals = self.reports.sum(axis=(1, 2))
        w_all, w_used = totals[self.seen].sum(), totals[used].sum()
        scale = w_all / w_used if w_used > 0 else 1.0
        return Estimate(self.reports[used].sum(axis=0) * scale, int(used.sum()), int(self.seen.sum()),
                        int(self.ts_ms[used].min()), int(self.ts_ms[used].max()))

    # ---- prediction ------------------------------------------------------------------
    def record_decision(self, switch_ms: int, decision: ControlDecision) -> None:
        """Remember what was sent for the round switching at `switch_ms`."""
        m = self._round(switch_ms)
        self._sent[m] = (np.asarray(decision.p_on, float), np.asarray(decision.p_off, float),
                         np.asarray(decision.on_kw, float), np.asarray(decision.off_kw, float))
        for old in [j for j in self._sent if j < m - 2 * self.horizon - 32]:
            del self._sent[old]
        self._hist = None

    def _round(self, t_ms: int) -> int:
        return int(round(int(t_ms) / self.round_ms))

    def _history(self):
        """Arrays (rounds (N,), inflow_er (N, k), inflow_dr (N, k)) of the decisions sent."""
        if self._hist is None:
            js = np.array(sorted(self._sent), dtype=np.int64)
            er = np.array([self._sent[j][2] for j in js]).reshape(js.size, self.k)
            dr = np.array([self._sent[j][3] for j in js]).reshape(js.size, self.k)
            self._hist = (js, er, dr)
        return self._hist

    def _outstanding(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        js, inf_er, inf_dr = self._history()
        return (_weighted(inf_er, self.survive_er, r - js), _weighted(inf_dr, self.survive_dr, r - js))

    def _expiring(self, m: int, r: int, ratio_er, ratio_dr, share: float):
        js, inf_er, inf_dr = self._history()
        d = m - js
        old = js <= r
        d_old, d_new = np.where(old, d, -1), np.where(old, -1, d)
        er = ratio_er * _weighted(inf_er, self.kernel_er, d_old) + _weighted(inf_er, self.kernel_er, d_new)
        dr = ratio_dr * _weighted(inf_dr, self.kernel_dr, d_old) + _weighted(inf_dr, self.kernel_dr, d_new)
        return er * share, dr * share

    def propagate(self, state_kw, report_ms: int, switch_ms: int, share: float = 1.0) -> np.ndarray:
        """Expected state at the switching instant of round `switch_ms` (after its timers),
        from a fleet state observed after round `report_ms`; `share` = this state's fraction of
        the fleet (the model's inflows are fleet totals)."""
        x = check_state(state_kw).copy()
        r, s = self._round(report_ms), self._round(switch_ms)
        out_er, out_dr = self._outstanding(r)
        out_er, out_dr = out_er * share, out_dr * share
        ratio_er = np.clip(_div(x[:, ER], out_er), 0.0, 1.0)
        ratio_dr = np.clip(_div(x[:, DR], out_dr), 0.0, 1.0)
        for m in range(r + 1, s + 1):
            exp_er, exp_dr = self._expiring(m, r, ratio_er, ratio_dr, share)
            exp_er, exp_dr = np.minimum(exp_er, x[:, ER]), np.minimum(exp_dr, x[:, DR])
            x[:, ER] -= exp_er
            x[:, EF] += exp_er
            x[:, DR] -= exp_dr
            x[:, DF] += exp_dr
            if m < s and m in self._sent:
                p_on, p_off, _, _ = self._sent[m]
                x = expected_after_switch(x, p_on, p_off)
        return np.maximum(x, 0.0)

    def predict(self, switch_ms: int, now_ms: int | None = None) -> np.ndarray:
        """Predicted (k, 4) fleet state at the switching instant of round `switch_ms`, from all
        usable reports (each propagated from its own round), scaled for missing sources."""
        now = switch_ms if now_ms is None else now_ms
        used = self._used(now)
        if not used.any():
            raise EstimatorError(f"no usable report at {now} (max age {self.max_age_ms} ms)")
        totals = self.reports.sum(axis=(1, 2))
        w_all, w_used = totals[self.seen].sum(), totals[used].sum()
        scale = w_all / w_used if w_used > 0 else 1.0
        out = np.zeros((self.k, 4))
        ts_used = self.ts_ms[used]
        for ts in np.unique(ts_used):
            members = np.flatnonzero(used)[ts_used == ts]
            group = self.reports[members].sum(axis=0) * scale
            share = float(totals[members].sum() / w_used) if w_used > 0 else 1.0
            out += self.propagate(group, int(ts), switch_ms, share)
        return out


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.ones_like(num)
    np.divide(num, den, out=out, where=den > 1e-12)
    return out


def _weighted(inflow: np.ndarray, weights: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Σ_j inflow[j] · weights[d[j]] over the j with 0 <= d[j] < len(weights)."""
    ok = (d >= 0) & (d < weights.size)
    if not ok.any():
        return np.zeros(inflow.shape[1])
    return weights[d[ok]] @ inflow[ok]
