// The aloft web UI: a small single-page app over the management API (no build step).
// Everything shown comes from the API; every value is inserted as text, never as HTML.
"use strict";

const API = "/api/management";
const state = { token: sessionStorage.getItem("aloft-token"), events: null, listeners: new Set(), seq: 0 };

// ---- DOM helpers ----
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const main = () => document.getElementById("main");
function show(...nodes) { const m = main(); m.replaceChildren(...nodes); }
// A page renders only if no other navigation started meanwhile (its data arrived late).
function render(seq, ...nodes) { if (seq === state.seq) show(...nodes); }
function toast(text) {
  const t = h("div", {}, text);
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 5000);
}
function badge(status) { return h("span", { class: `badge s-${status}` }, status); }
function when(ts) { return ts ? new Date(ts).toLocaleString() : ""; }
function size(n) { return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`; }
function empty(text) { return h("div", { class: "empty" }, text); }

// ---- API ----
class ApiError extends Error {}
async function api(method, path, body, raw) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined && !(body instanceof FormData)) headers["Content-Type"] = "application/json";
  const r = await fetch(API + path, { method, headers, body: body === undefined || body instanceof FormData ? body : JSON.stringify(body) });
  if (r.status === 401) { logout(false); throw new ApiError("Your session ended; log in again."); }
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { const j = await r.json(); if (j.error) msg = j.error; } catch (_) { /* not JSON */ }
    throw new ApiError(msg);
  }
  if (raw) return r;
  if (r.status === 204 || r.status === 201) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}
const get = (p) => api("GET", p);

// ---- Live events ----
function connectEvents() {
  if (state.events || !state.token) return;
  const es = new EventSource(`${API}/v1/events?access_token=${encodeURIComponent(state.token)}`);
  state.events = es;
  const live = document.getElementById("live");
  es.onopen = () => live.classList.add("on");
  es.onerror = () => live.classList.remove("on");
  es.onmessage = (m) => { const e = JSON.parse(m.data); for (const f of state.listeners) f(e); };
  es.addEventListener("lagged", () => { for (const f of state.listeners) f({ type: "lagged" }); });
}
function onEvent(f) { state.listeners.clear(); state.listeners.add(f); }

// ---- Login ----
function loginPage() {
  document.getElementById("top").hidden = true;
  const err = h("div", { class: "error", role: "alert" });
  const email = h("input", { id: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const r = await fetch(`${API}/v1/useradm/auth/login`, { method: "POST", headers: { Authorization: "Basic " + btoa(`${email.value}:${password.value}`) } });
    if (!r.ok) { err.textContent = r.status === 401 ? "Wrong e-mail or password." : `Login failed (${r.status}).`; return; }
    state.token = (await r.text()).trim();
    sessionStorage.setItem("aloft-token", state.token);
    route();
  } }, h("h1", {}, "Log in to aloft"), h("label", { for: "email" }, "E-mail"), email,
    h("label", { for: "password" }, "Password"), password, err, h("p", {}, h("button", { class: "primary", type: "submit" }, "Log in")));
  show(form);
  email.focus();
}
async function logout(tell = true) {
  if (tell && state.token) { try { await fetch(`${API}/v1/useradm/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${state.token}` } }); } catch (_) { /* offline */ } }
  state.token = null;
  sessionStorage.removeItem("aloft-token");
  if (state.events) { state.events.close(); state.events = null; }
  location.hash = "#/";
  loginPage();
}

// ---- Dashboard ----
async function dashboard() {
  const seq = state.seq;
  const counts = {};
  for (const s of ["pending", "accepted", "rejected"]) counts[s] = (await get(`/v2/devauth/devices/count?status=${s}`)).count;
  const deployments = await get("/v1/deployments/deployments?per_page=100");
  const active = deployments.filter((d) => d.status !== "finished");
  const failures = deployments.filter((d) => d.statistics && d.statistics.status.failure > 0).slice(0, 5);
  render(seq, h("h1", {}, "Dashboard"),
    h("div", { class: "grid" }, ["accepted", "pending", "rejected"].map((s) =>
      h("a", { class: "stat", href: `#/devices?status=${s}` }, h("b", {}, counts[s]), h("span", {}, `${s} devices`))),
      h("a", { class: "stat", href: "#/deployments" }, h("b", {}, active.length), h("span", {}, "deployments in progress"))),
    h("h2", {}, "Deployments in progress"), deploymentTable(active, "No deployment is running."),
    h("h2", {}, "Recent failures"), deploymentTable(failures, "No failed deployment."));
  onEvent(() => { if (location.hash === "#/" || location.hash === "") dashboard(); });
}

// ---- Devices ----
async function devicesPage(params) {
  const seq = state.seq;
  const status = params.get("status") || "accepted";
  const filter = params.get("q") || "";
  const list = await get(`/v2/devauth/devices?status=${status}&per_page=500`);
  const inv = status === "accepted" ? await get("/v1/inventory/devices?per_page=500") : [];
  const attrs = new Map(inv.map((d) => [d.id, d.attributes || []]));
  const attr = (id, name) => { const a = (attrs.get(id) || []).find((x) => x.name === name && x.scope === "inventory"); return a ? (Array.isArray(a.value) ? a.value.join(", ") : a.value) : ""; };
  const match = (d) => {
    if (!filter) return true;
    const [k, v] = filter.includes("=") ? filter.split("=", 2) : [null, filter];
    const hay = k ? [attr(d.id, k)] : [JSON.stringify(d.identity_data), ...(attrs.get(d.id) || []).map((a) => String(a.value))];
    return hay.some((x) => x.toLowerCase().includes(v.toLowerCase()));
  };
  const rows = list.filter(match);
  const search = h("input", { id: "search", type: "search", placeholder: "search, or attribute=value", value: filter, "aria-label": "Search devices" });
  const actions = (d) => {
    const aid = d.auth_sets && d.auth_sets[0] && d.auth_sets[0].id;
    const set = (s) => async () => { await api("PUT", `/v2/devauth/devices/${d.id}/auth/${aid}/status`, { status: s }); toast(`Device ${s}.`); devicesPage(params); };
    const out = [];
    if (status === "pending") out.push(h("button", { class: "primary", onclick: set("accepted"), "data-accept": d.id }, "Accept"), h("button", { class: "danger", onclick: set("rejected") }, "Reject"));
    if (status === "accepted") out.push(h("button", { class: "danger", onclick: set("rejected") }, "Reject"));
    if (status === "rejected") out.push(h("button", { onclick: set("accepted") }, "Accept"));
    out.push(h("button", { class: "danger", onclick: async () => { if (confirm("Decommission this device? Its data is deleted.")) { await api("DELETE", `/v2/devauth/devices/${d.id}`); toast("Device decommissioned."); devicesPage(params); } } }, "Decommission"));
    return h("div", { class: "row" }, out);
  };
  render(seq, h("h1", {}, "Devices"),
    h("div", { class: "tabs", role: "tablist" }, ["accepted", "pending", "rejected"].map((s) =>
      h("button", { role: "tab", "aria-selected": String(s === status), onclick: () => { location.hash = `#/devices?status=${s}`; } }, s))),
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); location.hash = `#/devices?status=${status}&q=${encodeURIComponent(search.value)}`; } }, search, h("button", { type: "submit" }, "Search")),
    h("p", {}),
    rows.length === 0 ? empty(filter ? "No device matches." : `No ${status} device.`) :
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Identity"), h("th", {}, "Software"), h("th", {}, "Updated"), h("th", {}, ""))),
        h("tbody", {}, rows.map((d) => h("tr", { "data-device": d.id },
          h("td", {}, h("a", { href: `#/devices/${d.id}` }, d.id.slice(0, 8))),
          h("td", {}, Object.entries(d.identity_data || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
          h("td", {}, attr(d.id, "artifact_name")),
          h("td", {}, when(d.updated_ts)),
          h("td", {}, actions(d))))))));
  onEvent((e) => { if (e.type === "device" && location.hash.startsWith("#/devices")) devicesPage(params); });
}

async function devicePage(id) {
  const seq = state.seq;
  const dev = await get(`/v2/devauth/devices/${id}`);
  let inv = { attributes: [] };
  try { inv = await get(`/v1/inventory/devices/${id}`); } catch (_) { /* not accepted yet */ }
  const history = await get(`/v1/deployments/deployments/devices/${id}?per_page=20`);
  const groupAttr = (inv.attributes || []).find((a) => a.name === "group");
  render(seq, h("h1", {}, `Device ${id.slice(0, 8)}`),
    h("div", { class: "card" }, h("dl", {}, h("dt", {}, "Id"), h("dd", {}, id), h("dt", {}, "Status"), h("dd", {}, badge(dev.status)),
      h("dt", {}, "Identity"), h("dd", {}, JSON.stringify(dev.identity_data)), h("dt", {}, "Group"), h("dd", {}, groupAttr ? groupAttr.value : "none"))),
    h("h2", {}, "Inventory"),
    (inv.attributes || []).length === 0 ? empty("No inventory yet.") :
      h("div", { class: "scroll" }, h("table", {}, h("tbody", {}, inv.attributes.filter((a) => a.scope === "inventory").map((a) =>
        h("tr", {}, h("th", {}, a.name), h("td", {}, Array.isArray(a.value) ? a.value.join(", ") : a.value)))))),
    h("h2", {}, "Deployment history"),
    history.length === 0 ? empty("No deployment yet.") :
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Deployment"), h("th", {}, "Artifact"), h("th", {}, "Status"), h("th", {}, "Finished"))),
        h("tbody", {}, history.map((x) => h("tr", {},
          h("td", {}, h("a", { href: `#/deployments/${x.deployment.id}` }, x.deployment.name)),
          h("td", {}, x.deployment.artifact_name), h("td", {}, badge(x.device.status), " ", x.device.substate || ""),
          h("td", {}, when(x.device.finished))))))));
  onEvent((e) => { if ((e.device_id === id || e.id === id) && location.hash === `#/devices/${id}`) devicePage(id); });
}

// ---- Artifacts ----
async function artifactsPage() {
  const seq = state.seq;
  const list = await get("/v1/deployments/artifacts");
  const file = h("input", { id: "artifact-file", type: "file", accept: ".mender", required: true });
  const desc = h("input", { id: "artifact-description", type: "text", placeholder: "optional" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const err = h("div", { class: "error", role: "alert" });
  const form = h("form", { class: "card", onsubmit: (e) => {
    e.preventDefault();
    err.textContent = "";
    if (!file.files.length) { err.textContent = "Choose a .mender file first."; return; }
    const data = new FormData();
    data.append("description", desc.value);
    data.append("artifact", file.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/v1/deployments/artifacts`);
    xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
    progress.hidden = false;
    xhr.upload.onprogress = (p) => { if (p.lengthComputable) progress.value = Math.round((p.loaded / p.total) * 100); };
    xhr.onload = () => {
      progress.hidden = true;
      if (xhr.status === 201) { toast(`Uploaded ${file.files[0].name}.`); artifactsPage(); return; }
      let msg = `Upload failed (${xhr.status}).`;
      try { msg = JSON.parse(xhr.responseText).error || msg; } catch (_) { /* not JSON */ }
      err.textContent = msg;
    };
    xhr.onerror = () => { progress.hidden = true; err.textContent = "Upload failed: the server cannot be reached."; };
    xhr.send(data);
  } }, h("h2", {}, "Upload an artifact"), h("label", { for: "artifact-file" }, "Artifact file"), file,
    h("label", { for: "artifact-description" }, "Description"), desc, h("p", {}, progress), err,
    h("button", { class: "primary", type: "submit" }, "Upload"));
  const details = (a) => h("tr", { class: "details", hidden: true }, h("td", { colspan: 6 }, h("dl", {},
    h("dt", {}, "Type"), h("dd", {}, (a.updates || []).map((u) => u.type_info.type).join(", ")),
    h("dt", {}, "Device types"), h("dd", {}, (a.device_types_compatible || []).join(", ")),
    h("dt", {}, "Provides"), h("dd", {}, Object.entries(a.artifact_provides || {}).map(([k, v]) => `${k}: ${v}`).join("; ")),
    h("dt", {}, "Depends"), h("dd", {}, Object.entries(a.artifact_depends || {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join("; ")),
    h("dt", {}, "Files"), h("dd", {}, (a.updates || []).flatMap((u) => u.files || []).map((f) => `${f.name} (${size(f.size)}, sha256 ${f.checksum.slice(0, 12)}…)`).join("; ")),
    h("dt", {}, "Signature"), h("dd", {}, a.signed ? "signed" : "not signed"),
    h("dt", {}, "Description"), h("dd", {}, a.description || ""))));
  render(seq, h("h1", {}, "Artifacts"), form,
    list.length === 0 ? empty("No artifact yet: upload one above.") :
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Device types"), h("th", {}, "Size"), h("th", {}, "Signed"), h("th", {}, ""))),
        h("tbody", {}, list.flatMap((a) => {
          const d = details(a);
          return [h("tr", { "data-artifact": a.name },
            h("td", {}, h("button", { class: "link-dark", "aria-expanded": "false", onclick: (e) => { d.hidden = !d.hidden; e.currentTarget.setAttribute("aria-expanded", String(!d.hidden)); } }, a.name)),
            h("td", {}, (a.updates || []).map((u) => u.type_info.type).join(", ")),
            h("td", {}, (a.device_types_compatible || []).join(", ")), h("td", {}, size(a.size || 0)), h("td", {}, a.signed ? "yes" : "no"),
            h("td", {}, h("div", { class: "row" },
              h("button", { onclick: async () => { const l = await get(`/v1/deployments/artifacts/${a.id}/download`); location.href = l.uri; } }, "Download"),
              h("button", { class: "danger", onclick: async () => { if (confirm(`Delete ${a.name}?`)) { try { await api("DELETE", `/v1/deployments/artifacts/${a.id}`); toast("Artifact deleted."); artifactsPage(); } catch (e) { toast(e.message); } } } }, "Delete")))), d];
        })))));
  onEvent(() => {});
}

// ---- Deployments ----
function statsBar(s) {
  const st = (s && s.status) || {};
  const total = Object.values(st).reduce((a, b) => a + b, 0) || 1;
  const part = (n, color) => h("i", { style: `width:${(100 * n) / total}%;background:${color}` });
  const running = (st.downloading || 0) + (st.installing || 0) + (st.rebooting || 0);
  return h("div", { class: "bar", title: `${st.success || 0} succeeded, ${st.failure || 0} failed, ${running} running, ${st.pending || 0} pending` },
    part(st.success || 0, "#2da44e"), part((st["already-installed"] || 0) + (st.noartifact || 0), "#8c959f"), part(st.failure || 0, "#cf222e"), part(running, "#54aeff"));
}
function deploymentTable(list, none) {
  if (list.length === 0) return empty(none);
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Artifact"), h("th", {}, "Status"), h("th", {}, "Progress"), h("th", {}, "Created"))),
    h("tbody", {}, list.map((d) => h("tr", { "data-deployment": d.id },
      h("td", {}, h("a", { href: `#/deployments/${d.id}` }, d.name)), h("td", {}, d.artifact_name), h("td", {}, badge(d.status)),
      h("td", {}, statsBar(d.statistics)), h("td", {}, when(d.created)))))));
}

async function deploymentsPage() {
  const seq = state.seq;
  const [list, artifacts, accepted, groups] = await Promise.all([get("/v1/deployments/deployments?per_page=100"), get("/v1/deployments/artifacts"),
    get("/v2/devauth/devices?status=accepted&per_page=500"), get("/v1/inventory/groups")]);
  const names = [...new Set(artifacts.map((a) => a.name))];
  const name = h("input", { id: "deployment-name", required: true, value: "" });
  const artifact = h("select", { id: "deployment-artifact" }, names.map((n) => h("option", { value: n }, n)));
  const target = h("select", { id: "deployment-target" }, h("option", { value: "all" }, "All accepted devices"),
    groups.map((g) => h("option", { value: `group:${g}` }, `Group ${g}`)), h("option", { value: "pick" }, "Chosen devices"));
  const picks = h("div", { hidden: true, class: "card" }, accepted.length === 0 ? empty("No accepted device.") :
    accepted.map((d) => h("label", { class: "row" }, h("input", { type: "checkbox", value: d.id, "data-pick": d.id, onchange: () => summary() }),
      `${d.id.slice(0, 8)} ${Object.values(d.identity_data || {}).join(" ")}`)));
  const matching = h("p", { id: "deployment-summary", class: "muted", "aria-live": "polite" });
  const err = h("div", { class: "error", role: "alert" });
  const chosen = () => [...picks.querySelectorAll("input:checked")].map((i) => i.value);
  async function summary() {
    picks.hidden = target.value !== "pick";
    let n = accepted.length;
    if (target.value === "pick") n = chosen().length;
    else if (target.value.startsWith("group:")) n = (await get(`/v1/inventory/groups/${encodeURIComponent(target.value.slice(6))}/devices?per_page=500`)).length;
    matching.textContent = `${n} device${n === 1 ? "" : "s"} will get ${artifact.value || "the artifact"} (if compatible).`;
  }
  target.onchange = summary; artifact.onchange = summary;
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    const body = { name: name.value || artifact.value, artifact_name: artifact.value };
    try {
      if (target.value === "all") { body.all_devices = true; await api("POST", "/v1/deployments/deployments", body); }
      else if (target.value === "pick") { body.devices = chosen(); if (!body.devices.length) { err.textContent = "Choose at least one device."; return; } await api("POST", "/v1/deployments/deployments", body); }
      else await api("POST", `/v1/deployments/deployments/group/${encodeURIComponent(target.value.slice(6))}`, body);
      toast("Deployment created.");
      deploymentsPage();
    } catch (x) { err.textContent = x.message; }
  } }, h("h2", {}, "New deployment"),
    names.length === 0 ? empty("Upload an artifact first.") : [
      h("label", { for: "deployment-name" }, "Name"), name, h("label", { for: "deployment-artifact" }, "Artifact"), artifact,
      h("label", { for: "deployment-target" }, "Devices"), target, picks, matching, err,
      h("button", { class: "primary", type: "submit", id: "deployment-create" }, "Create deployment")]);
  render(seq, h("h1", {}, "Deployments"), form, h("h2", {}, "All deployments"), deploymentTable(list, "No deployment yet."));
  if (names.length) summary();
  onEvent((e) => { if (e.type === "deployment" && location.hash === "#/deployments") deploymentsPage(); });
}

async function deploymentPage(id) {
  const seq = state.seq;
  const [d, devices] = await Promise.all([get(`/v1/deployments/deployments/${id}`), get(`/v1/deployments/deployments/${id}/devices`)]);
  const stats = h("div", { class: "grid", id: "deployment-stats" });
  const renderStats = (s) => stats.replaceChildren(...Object.entries(s.status || s).filter(([, n]) => n > 0).map(([k, n]) =>
    h("div", { class: "stat" }, h("b", {}, n), h("span", {}, k))));
  renderStats(d.statistics);
  const logBox = h("div", {});
  const rows = new Map();
  const row = (x) => {
    const r = h("tr", { "data-device": x.id },
      h("td", {}, h("a", { href: `#/devices/${x.id}` }, x.id.slice(0, 8))),
      h("td", { class: "status" }, badge(x.status)),
      h("td", { class: "substate" }, x.substate || ""),
      h("td", {}, x.status === "failure" ? h("button", { "data-log": x.id, onclick: async () => {
        const text = await api("GET", `/v1/deployments/deployments/${id}/devices/${x.id}/log`);
        logBox.replaceChildren(h("h2", {}, `Log of ${x.id.slice(0, 8)}`), h("pre", { id: "device-log" }, text));
        logBox.scrollIntoView();
      } }, "Show log") : ""));
    rows.set(x.id, r);
    return r;
  };
  const status = h("span", { id: "deployment-status" }, badge(d.status));
  render(seq, h("h1", {}, `Deployment ${d.name}`),
    h("div", { class: "card" }, h("dl", {}, h("dt", {}, "Artifact"), h("dd", {}, d.artifact_name), h("dt", {}, "Status"), h("dd", {}, status),
      h("dt", {}, "Devices"), h("dd", {}, d.max_devices || devices.length), h("dt", {}, "Created"), h("dd", {}, when(d.created))),
      d.status !== "finished" ? h("p", {}, h("button", { class: "danger", id: "abort", onclick: async () => {
        if (!confirm("Abort this deployment? Devices that did not finish roll back.")) return;
        try { await api("PUT", `/v1/deployments/deployments/${id}/status`, { status: "aborted" }); toast("Deployment aborted."); deploymentPage(id); } catch (e) { toast(e.message); }
      } }, "Abort")) : ""),
    h("h2", {}, "Statistics"), stats,
    h("h2", {}, "Devices"),
    devices.length === 0 ? empty("No device in this deployment.") :
      h("div", { class: "scroll" }, h("table", { id: "deployment-devices" }, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Status"), h("th", {}, "Detail"), h("th", {}, ""))),
        h("tbody", {}, devices.map(row)))),
    logBox);
  onEvent(async (e) => {
    if (location.hash !== `#/deployments/${id}`) return;
    if (e.type === "device_deployment" && e.deployment_id === id) {
      const old = rows.get(e.device_id);
      if (old) old.replaceWith(row({ id: e.device_id, status: e.status, substate: e.substate }));
      const fresh = await get(`/v1/deployments/deployments/${id}`);
      renderStats(fresh.statistics);
      status.replaceChildren(badge(fresh.status));
      if (fresh.status === "finished") { const a = document.getElementById("abort"); if (a) a.remove(); }
    } else if (e.type === "lagged" || (e.type === "deployment" && e.id === id)) deploymentPage(id);
  });
}

// ---- Router ----
async function route() {
  state.seq += 1;
  if (!state.token) { loginPage(); return; }
  document.getElementById("top").hidden = false;
  connectEvents();
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", (parts[0] || "dashboard") === a.dataset.nav);
  try {
    if (parts.length === 0) await dashboard();
    else if (parts[0] === "devices" && parts[1]) await devicePage(parts[1]);
    else if (parts[0] === "devices") await devicesPage(params);
    else if (parts[0] === "artifacts") await artifactsPage();
    else if (parts[0] === "deployments" && parts[1]) await deploymentPage(parts[1]);
    else if (parts[0] === "deployments") await deploymentsPage();
    else show(h("h1", {}, "Not found"), empty("There is no such page."), h("a", { href: "#/" }, "Back to the dashboard"));
    main().focus({ preventScroll: true });
  } catch (e) {
    if (state.token) show(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message), h("button", { onclick: route }, "Try again"));
  }
}
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => { toast(e.reason && e.reason.message ? e.reason.message : String(e.reason)); e.preventDefault(); });
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout(true));
  route();
});
