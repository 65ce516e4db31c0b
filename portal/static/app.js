// colorgrid portal dashboard: polls the API every 2 s with the bearer token kept in sessionStorage.
"use strict";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let timer = null;

function token() { return sessionStorage.getItem("cg_token") || ""; }

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { throw Object.assign(new Error(body.error || "unauthorized"), { login: true }); }
  if (!r.ok) { throw new Error(body.error || ("HTTP " + r.status)); }
  return body;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
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

const num = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : x);
const utc = (ms) => (ms ? new Date(ms).toISOString().replace(".000Z", "Z") : null);

function showLogin(message) {
  clearInterval(timer); timer = null;
  $("main").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function refresh() {
  try {
    const me = await api("/v1/token");
    $("who").textContent = me.stakeholder;
    $("scopes").textContent = "(" + me.scopes.join(", ") + "; groups " + (me.groups.join(", ") || "none") + ")";
    const groups = (await api("/v1/fleet/groups")).groups;
    fill("groups", groups.map((g) => {
      const r = g.latest_round || {};
      return [cell(g.group, "l"), cell(g.gateways), cell(g.online, g.online < g.gateways ? "bad" : "ok"),
        cell(num(g.capacity_kw)), cell(num(r.goal_kw)), cell(num(r.measured_enabled_kw)),
        cell(r.enabled_kw ? r.enabled_kw.map((x) => num(x)).join(" / ") : null),
        cell(r.n_live === undefined ? null : `${r.n_fresh} / ${r.n_missing} / ${r.n_fail_safe}`,
             r.n_fail_safe ? "bad" : ""),
        cell(r.round_id !== undefined ? r.round_id : (g.latest_vector || {}).round_id)];
    }));
    const gws = (await api("/v1/fleet/gateways")).gateways;
    fill("gateways", gws.map((w) => [cell(w.gateway_id, "l"), cell(w.group, "l"),
      cell(w.online ? "online" : "offline", "l " + (w.online ? "ok" : "bad")), cell(w.bd_seq), cell(w.devices),
      cell(num((w.capacity_w || 0) / 1000)), cell(utc(w.last_session_event_ts_ms))]));
    $("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    $("error").textContent = "";
  } catch (e) {
    if (e.login) { showLogin(e.message); } else { $("error").textContent = e.message; }
  }
}

function start() {
  $("login").hidden = true; $("main").hidden = false;
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
