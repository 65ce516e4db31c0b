// colorgrid portal dashboard: polls the API every 2 s with the bearer token kept in sessionStorage;
// a 401 shows the login again. Charts are hand-drawn inline SVG: no library, nothing fetched from
// anywhere but this portal.
"use strict";
const POLL_MS = 2000;
const ROUNDS = 300;                    // rounds per chart (10 min of 2-s rounds)
const SVG_NS = "http://www.w3.org/2000/svg";
const TIER_COLOURS = { green: "#66bb6a", yellow: "#fdd835", black: "#616161", red: "#e57373", blue: "#64b5f6" };
const PALETTE = ["#80cbc4", "#ce93d8", "#ffb74d", "#90a4ae", "#a1887f"];
const $ = (id) => document.getElementById(id);
let timer = null;
let busy = false;
const dlmpState = { key: null, rows: [], interval: null };

function token() { return sessionStorage.getItem("cg_token") || ""; }

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { throw Object.assign(new Error(body.error || "unauthorized"), { login: true }); }
  if (!r.ok) { throw Object.assign(new Error(body.error || ("HTTP " + r.status)), { status: r.status }); }
  return body;
}

// ---- DOM helpers --------------------------------------------------------------------------------
function cell(content, cls) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content === null || content === undefined ? "–" : String(content);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows) {
  const tbody = $(tableId).querySelector("tbody");
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v !== null && v !== undefined) node.setAttribute(k, v); }
  for (const c of children) { if (c !== null && c !== undefined) node.append(c); }
  return node;
}

function badge(health) { return el("span", { class: "health " + health }, health); }

const num = (x, d = 1) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : (x === null || x === undefined ? null : x));
const utc = (ms) => (ms ? new Date(ms).toISOString().replace(".000Z", "Z") : null);
const tierColour = (name, i) => TIER_COLOURS[name] || PALETTE[i % PALETTE.length];

// ---- axes ---------------------------------------------------------------------------------------
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// ---- goal vs achieved ---------------------------------------------------------------------------
// One SVG per group: enabled kW per tier stacked, achieved (measured enabled kW) and goal as lines.
function groupChart(series, tiers) {
  const W = 640, H = 230, L = 52, R = 12, T = 10, B = 28;
  const t = series.t_s, n = t.length;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `goal vs achieved, group ${series.group}`, "data-group": series.group,
    "data-rounds": n, "data-last-round": n ? series.round_id[n - 1] : "" });
  if (!n) { svg.append(el("svg:text", { x: L, y: H / 2 }, "no rounds yet")); return svg; }
  const stackTop = series.enabled_kw.reduce((acc, col) => acc.map((a, i) => a + (col[i] || 0)), new Array(n).fill(0));
  const values = [...stackTop, ...series.goal_kw, ...series.measured_enabled_kw].filter((v) => typeof v === "number");
  const yMax = Math.max(1e-9, ...values) * 1.08;
  const x0 = t[0], x1 = n > 1 ? t[n - 1] : t[0] + 1;
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - v / yMax) * (H - T - B);
  for (const v of niceTicks(0, yMax, 5)) {
    svg.append(el("svg:line", { class: "grid", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    svg.append(el("svg:text", { x: L - 4, y: Y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  for (const v of niceTicks(x0, x1, 6)) {
    if (v < x0 || v > x1) continue;
    svg.append(el("svg:line", { class: "axis", x1: X(v), x2: X(v), y1: H - B, y2: H - B + 4 }));
    svg.append(el("svg:text", { x: X(v), y: H - B + 16, "text-anchor": "middle" }, `${v} s`));
  }
  svg.append(el("svg:line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(el("svg:line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  svg.append(el("svg:text", { x: 4, y: T + 8 }, "kW"));
  // stacked tier areas, the tier that is shed first (tier 0) at the bottom
  const base = new Array(n).fill(0);
  series.enabled_kw.forEach((col, k) => {
    const top = base.map((b, i) => b + (col[i] || 0));
    let d = "";
    for (let i = 0; i < n; i++) d += (i ? "L" : "M") + X(t[i]).toFixed(1) + "," + Y(top[i]).toFixed(1);
    for (let i = n - 1; i >= 0; i--) d += "L" + X(t[i]).toFixed(1) + "," + Y(base[i]).toFixed(1);
    svg.append(el("svg:path", { d: d + "Z", fill: tierColour(tiers[k], k), "fill-opacity": 0.45, stroke: "none",
      class: "tier", "data-tier": tiers[k] || `t${k}` }));
    for (let i = 0; i < n; i++) base[i] = top[i];
  });
  const line = (ys, cls, step) => {
    let d = "", pen = false;
    for (let i = 0; i < n; i++) {
      const v = ys[i];
      if (typeof v !== "number") { pen = false; continue; }
      if (pen && step) d += "L" + X(t[i]).toFixed(1) + "," + Y(ys[i - 1]).toFixed(1);
      d += (pen ? "L" : "M") + X(t[i]).toFixed(1) + "," + Y(v).toFixed(1);
      pen = true;
    }
    return el("svg:path", { d: d || "M0,0", class: cls });
  };
  svg.append(line(series.goal_kw, "goal", true));
  svg.append(line(series.measured_enabled_kw, "achieved", false));
  return svg;
}

function chartCard(series, group) {
  const tiers = (group && group.tiers && group.tiers.length) ? group.tiers : series.enabled_kw.map((_, k) => `t${k}`);
  const n = series.t_s.length;
  const last = (a) => (n ? a[n - 1] : null);
  const legend = el("p", { class: "legend" },
    el("span", { class: "key" }, el("i", { style: "background:#d32f2f" }), `goal ${num(last(series.goal_kw)) ?? "–"} kW`),
    el("span", { class: "key" }, el("i", { style: "background:#1a237e" }),
      `achieved ${num(last(series.measured_enabled_kw)) ?? "–"} kW`),
    ...series.enabled_kw.map((col, k) => el("span", { class: "key", "data-tier": tiers[k] },
      el("i", { style: `background:${tierColour(tiers[k], k)}` }), `${tiers[k]} ${num(last(col)) ?? "–"} kW`)));
  return el("div", { class: "chart", id: "chart-" + series.group },
    el("h3", {}, `${series.group} `, el("span", { class: "muted" }, `round ${last(series.round_id) ?? "–"}`)),
    groupChart(series, tiers), legend);
}

// ---- DLMP heatmap -------------------------------------------------------------------------------
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(f) {
  f = Math.min(1, Math.max(0, isFinite(f) ? f : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(f)), u = f - i;
  const c = VIRIDIS[i].map((a, j) => Math.round(a + (VIRIDIS[i + 1][j] - a) * u));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function dlmpHeatmap(rows) {
  const locs = [], seen = new Map(), intervals = new Set();
  for (const r of rows) {
    const key = `${r.bus}.${r.phase}`;
    if (!seen.has(key)) { seen.set(key, locs.length); locs.push(key); }
    intervals.add(r.interval);
  }
  const ints = [...intervals].sort((a, b) => a - b);
  const col = new Map(ints.map((v, i) => [v, i]));
  const prices = rows.map((r) => r.dlmp_usd_per_mwh).filter((v) => typeof v === "number" && isFinite(v));
  const lo = prices.length ? Math.min(...prices) : 0, hi = prices.length ? Math.max(...prices) : 1;
  const L = 80, T = 6, cw = Math.max(4, Math.min(28, 900 / Math.max(1, ints.length)));
  const ch = Math.max(3, Math.min(14, 520 / Math.max(1, locs.length)));
  const W = L + cw * ints.length + 90, H = T + ch * locs.length + 24;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "DLMP heatmap",
    "data-locations": locs.length, "data-intervals": ints.length });
  for (const r of rows) {
    const i = seen.get(`${r.bus}.${r.phase}`), j = col.get(r.interval);
    const v = r.dlmp_usd_per_mwh;
    const rect = el("svg:rect", { class: "cell", x: L + j * cw, y: T + i * ch, width: cw, height: ch,
      fill: typeof v === "number" ? colour((v - lo) / (hi - lo || 1)) : "#eee", "data-interval": r.interval });
    rect.append(el("svg:title", {}, `${r.bus}.${r.phase}, interval ${r.interval}: ${num(v, 2)} USD/MWh ` +
      `(energy ${num(r.energy, 2)}, loss ${num(r.loss, 2)}, congestion ${num(r.congestion, 2)}, voltage ${num(r.voltage, 2)})`));
    svg.append(rect);
  }
  if (dlmpState.interval !== null && col.has(dlmpState.interval)) {
    svg.append(el("svg:rect", { class: "selected", x: L + col.get(dlmpState.interval) * cw, y: T, width: cw,
      height: ch * locs.length }));
  }
  const every = Math.ceil(11 / ch);
  locs.forEach((name, i) => {
    if (i % every === 0) svg.append(el("svg:text", { x: L - 4, y: T + i * ch + ch / 2 + 4, "text-anchor": "end" }, name));
  });
  const xEvery = Math.ceil(26 / cw);
  ints.forEach((v, j) => {
    if (j % xEvery === 0) svg.append(el("svg:text", { x: L + j * cw + cw / 2, y: H - 8, "text-anchor": "middle" }, String(v)));
  });
  // colour scale
  const sx = L + cw * ints.length + 20, sh = Math.min(160, ch * locs.length);
  for (let k = 0; k < 20; k++) {
    svg.append(el("svg:rect", { x: sx, y: T + sh - (k + 1) * sh / 20, width: 12, height: sh / 20 + 0.5, fill: colour(k / 19) }));
  }
  svg.append(el("svg:text", { x: sx + 16, y: T + 10 }, `${num(hi, 1)}`));
  svg.append(el("svg:text", { x: sx + 16, y: T + sh }, `${num(lo, 1)}`));
  svg.append(el("svg:text", { x: sx, y: T + sh + 14 }, "USD/MWh"));
  svg.addEventListener("click", (ev) => {
    const v = ev.target.getAttribute && ev.target.getAttribute("data-interval");
    if (v !== null && v !== undefined) { dlmpState.interval = Number(v); drawDlmp(); }
  });
  return { svg, ints };
}

function drawDlmp() {
  const rows = dlmpState.rows;
  const ints = [...new Set(rows.map((r) => r.interval))];
  if (dlmpState.interval === null || !ints.includes(dlmpState.interval)) {
    // default: the interval with the highest price anywhere
    let best = null;
    for (const r of rows) if (typeof r.dlmp_usd_per_mwh === "number" && (!best || r.dlmp_usd_per_mwh > best.dlmp_usd_per_mwh)) best = r;
    dlmpState.interval = best ? best.interval : (ints.length ? ints[0] : null);
  }
  const { svg } = dlmpHeatmap(rows);
  $("dlmp-heatmap").replaceChildren(svg);
  $("dlmp-interval").textContent = String(dlmpState.interval);
  const sel = rows.filter((r) => r.interval === dlmpState.interval)
    .sort((a, b) => (b.dlmp_usd_per_mwh ?? -Infinity) - (a.dlmp_usd_per_mwh ?? -Infinity));
  fill("dlmp", sel.map((r) => [cell(r.bus, "l"), cell(r.phase, "l"), cell(num(r.dlmp_usd_per_mwh, 2)),
    cell(num(r.energy, 2)), cell(num(r.loss, 2)), cell(num(r.congestion, 2)), cell(num(r.voltage, 2))]));
}

async function refreshMarket(me) {
  const may = me.scopes.includes("market:read") || me.scopes.includes("admin");
  if (!may) { $("market").hidden = true; return; }
  const index = await api("/v1/market");
  const t = index.tables && index.tables.dlmp;
  if (!t) { $("market").hidden = true; dlmpState.key = null; return; }
  const key = `${t.file}|${t.rows}|${t.modified_ts_ms}`;
  if (key !== dlmpState.key) {
    const rows = [];
    for (let offset = 0; ; offset += 10000) {            // the whole table, 10,000 rows a call
      const page = await api(`/v1/market/dlmp?limit=10000&offset=${offset}`);
      rows.push(...page.rows);
      if (rows.length >= page.total || !page.rows.length || offset > 200000) break;
    }
    dlmpState.rows = rows;
    dlmpState.key = key;
    $("dlmp-source").textContent = `${t.file}: ${rows.length} rows (bus · phase × interval)`;
    drawDlmp();
  }
  $("market").hidden = false;
}

// ---- fleet --------------------------------------------------------------------------------------
async function refreshFleet(me) {
  const may = me.scopes.includes("fleet:read") || me.scopes.includes("admin");
  $("fleet").hidden = !may;
  if (!may) return;
  const [groups, series, gws] = await Promise.all([api("/v1/fleet/groups"), api(`/v1/fleet/rounds?limit=${ROUNDS}`),
    api("/v1/fleet/gateways")]);
  const byName = new Map(groups.groups.map((g) => [g.group, g]));
  fill("groups", groups.groups.map((g) => {
    const r = g.latest_round || {};
    const h = g.health || {};
    const err = typeof r.goal_kw === "number" && typeof r.measured_enabled_kw === "number" ? r.measured_enabled_kw - r.goal_kw : null;
    const tiers = r.enabled_kw ? r.enabled_kw.map((x, k) => `${(g.tiers || [])[k] || "t" + k} ${num(x)}`).join(" · ") : null;
    return [cell(g.group, "l"),
      cell(el("span", {}, badge("online"), ` ${h.online ?? "–"}  `, badge("stale"), ` ${h.stale ?? "–"}  `,
        badge("offline"), ` ${h.offline ?? "–"}`), "l"),
      cell(num(g.capacity_kw)), cell(num(r.goal_kw)), cell(num(r.measured_enabled_kw)), cell(num(err)),
      cell(tiers, "l"),
      cell(r.n_live === undefined ? null : `${r.n_fresh} / ${r.n_missing} / ${r.n_fail_safe}`,
        r.n_fail_safe ? "bad" : (r.n_missing ? "warn" : "")),
      cell(r.round_id !== undefined ? r.round_id : (g.latest_vector || {}).round_id),
      cell(g.vector_in_force ? "in force" : (g.latest_vector ? "expired" : "none"), "l " + (g.vector_in_force ? "ok" : "warn"))];
  }));
  $("window").textContent = String(ROUNDS);
  $("charts").replaceChildren(...series.groups.map((s) => chartCard(s, byName.get(s.group))));
  fill("gateways", gws.gateways.map((w) => [cell(w.gateway_id, "l"), cell(w.group, "l"),
    cell(badge(w.health || (w.online ? "online" : "offline")), "l"), cell(w.bd_seq), cell(w.devices),
    cell(num((w.capacity_w || 0) / 1000)), cell(w.vector_round_id), cell(utc(w.last_session_event_ts_ms), "l"),
    ...liveCells(w.live)]));
}

// the controller's own view of a gateway, when it runs in the serving process (`serve --demo`)
function liveCells(live) {
  if (!live) return [cell(null), cell(null), cell(null)];
  const age = live.report_age_ms === null || live.report_age_ms === undefined ? null : live.report_age_ms / 1000;
  return [cell(badge(live.state), "l"), cell(age === null ? null : age.toFixed(1), age !== null && age > 3 ? "warn" : ""),
          cell(live.store_depth, live.store_depth ? "warn" : "")];
}

// ---- the loop -----------------------------------------------------------------------------------
function showLogin(message) {
  clearInterval(timer); timer = null;
  $("main").hidden = true; $("status-line").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function refresh() {
  if (busy) return;                                   // a slow poll is never overlapped
  busy = true;
  try {
    const me = await api("/v1/token");
    $("who").textContent = me.stakeholder;
    $("scopes").textContent = "(" + me.scopes.join(", ") + "; groups " + (me.groups.join(", ") || "none") + ")";
    const errors = [];
    for (const part of [refreshFleet, refreshMarket]) {
      try { await part(me); } catch (e) { if (e.login) throw e; errors.push(e.message); }
    }
    $("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    $("error").textContent = errors.join("; ");
  } catch (e) {
    if (e.login) { showLogin(e.message); } else { $("error").textContent = e.message; }
  } finally {
    busy = false;
  }
}

function start() {
  $("login").hidden = true; $("main").hidden = false; $("status-line").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("cg_token", $("token").value.trim());
  start();
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("cg_token"); showLogin(""); });
if (token()) { start(); } else { showLogin(""); }
