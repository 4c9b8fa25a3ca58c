// The aloft web UI: a small single-page app over the management API (no build step).
// Everything shown comes from the API; every value is inserted as text, never as HTML.
"use strict";

const API = "/api/management";
const state = { token: sessionStorage.getItem("aloft-token"), events: null, listeners: new Set(), missed: null, opened: false, seq: 0 };

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
// A deployment's badge: its status while it runs, the server's verdict once it finished.
function deploymentBadge(d) {
  const word = d.status === "finished" && d.summary ? d.summary.outcome : d.status;
  return h("span", { class: `badge s-${word}`, "data-outcome": word }, word);
}
// Applies a live event's deployment progress to a deployment object shown (same id).
function applyProgress(d, p) { d.status = p.status; d.statistics = p.statistics; d.summary = p.summary; d.phases = p.phases; d.rollout = p.rollout; }
// The deployment progress an event carries, if any.
function progressOf(e) { return e.type === "deployment" ? e : e.deployment; }
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
// The stream is opened with a single-use ticket (an EventSource cannot send the token as a
// header, and a token in a URL would be logged); after an error it reconnects with a new one.
async function connectEvents() {
  if (state.events || !state.token) return;
  state.events = "connecting";
  let ticket;
  try { ticket = (await api("POST", "/v1/events/ticket")).ticket; } catch (_) { state.events = null; return; }
  if (state.events !== "connecting") return;
  const es = new EventSource(`${API}/v1/events?ticket=${encodeURIComponent(ticket)}`);
  state.events = es;
  const live = document.getElementById("live");
  // A stream that opens again after an error missed what happened meanwhile: redraw the page.
  es.onopen = () => { live.classList.add("on"); if (state.opened) route(); state.opened = true; };
  es.onerror = () => {
    live.classList.remove("on");
    es.close();
    if (state.events === es) { state.events = null; setTimeout(connectEvents, 3000); }
  };
  es.onmessage = (m) => dispatch(JSON.parse(m.data));
  es.addEventListener("lagged", () => dispatch({ type: "lagged" }));
}
function dispatch(e) {
  if (state.missed) state.missed.push(state.missed.length < 1000 ? e : { type: "lagged" });
  else for (const f of state.listeners) f(e);
}
// A page calls `loading()` before it fetches and `onEvent(f)` once it is drawn: the events that
// arrived in between are given to `f` in order, so a change made while the page loaded is not lost.
function loading() { state.listeners.clear(); state.missed = []; }
function onEvent(f) {
  const missed = state.missed || [];
  state.missed = null;
  state.listeners.clear();
  state.listeners.add(f);
  for (const e of missed) f(e);
}

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
  if (state.events instanceof EventSource) state.events.close();
  state.events = null;
  location.hash = "#/";
  loginPage();
}

// ---- Dashboard ----
async function dashboard() {
  loading();
  const seq = state.seq;
  const counts = {};
  for (const s of ["pending", "accepted", "rejected"]) counts[s] = (await get(`/v2/devauth/devices/count?status=${s}`)).count;
  const deployments = await get("/v1/deployments/deployments?per_page=100");
  const draw = () => {
    const active = deployments.filter((d) => d.status !== "finished");
    const failures = deployments.filter((d) => d.summary && d.summary.failure > 0).slice(0, 5);
    render(seq, h("h1", {}, "Dashboard"),
      h("div", { class: "grid" }, ["accepted", "pending", "rejected"].map((s) =>
        h("a", { class: "stat", href: `#/devices?status=${s}` }, h("b", {}, counts[s]), h("span", {}, `${s} devices`))),
        h("a", { class: "stat", href: "#/deployments" }, h("b", { id: "active-count" }, active.length), h("span", {}, "deployments in progress"))),
      h("h2", {}, "Deployments in progress"), deploymentTable(active, "No deployment is running."),
      h("h2", {}, "Recent failures"), deploymentTable(failures, "No failed deployment."));
  };
  draw();
  onEvent((e) => {
    if (location.hash !== "#/" && location.hash !== "") return;
    const p = progressOf(e);
    const known = p && deployments.find((d) => d.id === p.id);
    if (known) { applyProgress(known, p); draw(); } else dashboard();
  });
}

// ---- Devices ----
async function devicesPage(params) {
  loading();
  const seq = state.seq;
  const status = params.get("status") || "accepted";
  const filter = params.get("q") || "";
  const list = await get(`/v2/devauth/devices?status=${status}&per_page=500`);
  const inv = status === "accepted" ? await get("/v1/inventory/devices?per_page=500") : [];
  const attrs = new Map(inv.map((d) => [d.id, d.attributes || []]));
  const groupOf = (id) => { const a = (attrs.get(id) || []).find((x) => x.name === "group" && x.scope === "system"); return a ? String(a.value) : ""; };
  const attr = (id, name) => { const a = (attrs.get(id) || []).find((x) => x.name === name && x.scope === "inventory"); return a ? (Array.isArray(a.value) ? a.value.join(", ") : a.value) : ""; };
  // Keys are shown in capitals: "Group=x", "group=x" and "GROUP=x" all find the group, in
  // any scope (inventory, identity, system, tags); values match case-insensitively too.
  const valuesOf = (id, key) => (attrs.get(id) || []).filter((a) => a.name.toLowerCase() === key)
    .map((a) => (Array.isArray(a.value) ? a.value.join(", ") : String(a.value)));
  const match = (d) => {
    if (!filter) return true;
    const [k, v] = filter.includes("=") ? filter.split("=", 2).map((x) => x.trim().toLowerCase()) : [null, filter.toLowerCase()];
    const identity = Object.entries(d.identity_data || {}).filter(([n]) => n.toLowerCase() === k).map(([, x]) => String(x));
    const hay = k ? [...valuesOf(d.id, k), ...identity] : [JSON.stringify(d.identity_data), ...(attrs.get(d.id) || []).map((a) => String(a.value))];
    return hay.some((x) => x.toLowerCase().includes(v));
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
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Identity"), h("th", {}, "Group"), h("th", {}, "Software"), h("th", {}, "Updated"), h("th", {}, ""))),
        h("tbody", {}, rows.map((d) => h("tr", { "data-device": d.id },
          h("td", {}, h("a", { href: `#/devices/${d.id}` }, d.id.slice(0, 8))),
          h("td", {}, Object.entries(d.identity_data || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
          h("td", { class: "group" }, groupOf(d.id)),
          h("td", {}, attr(d.id, "artifact_name")),
          h("td", {}, when(d.updated_ts)),
          h("td", {}, actions(d))))))),
    status === "accepted" ? await dynamicGroups() : "");
  onEvent((e) => { if (e.type === "device" && location.hash.startsWith("#/devices")) devicesPage(params); });
}

async function devicePage(id) {
  loading();
  const seq = state.seq;
  const dev = await get(`/v2/devauth/devices/${id}`);
  let inv = { attributes: [] };
  try { inv = await get(`/v1/inventory/devices/${id}`); } catch (_) { /* not accepted yet */ }
  const history = await get(`/v1/deployments/deployments/devices/${id}?per_page=20`);
  const groupAttr = (inv.attributes || []).find((a) => a.name === "group");
  const group = groupAttr ? String(groupAttr.value) : null;
  render(seq, h("h1", {}, `Device ${id.slice(0, 8)}`),
    h("div", { class: "card" }, h("dl", {}, h("dt", {}, "Id"), h("dd", {}, id), h("dt", {}, "Status"), h("dd", {}, badge(dev.status)),
      h("dt", {}, "Identity"), h("dd", {}, JSON.stringify(dev.identity_data)),
      h("dt", {}, "Group"), h("dd", { id: "device-group" }, dev.status === "accepted" ? await groupEditor(id, group) : group || "none"))),
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

// A device's static group, changed in place: a device is in at most one group, so setting
// another moves it. The server checks the name and says what is wrong with it.
async function groupEditor(id, group) {
  const names = await get("/v1/inventory/groups");
  const input = h("input", { id: "group-name", type: "text", value: group || "", list: "group-names", placeholder: "group name", "aria-label": "Group" });
  const err = h("span", { class: "error", role: "alert" });
  const save = async (e) => {
    e.preventDefault();
    err.textContent = "";
    const name = input.value.trim();
    try {
      if (name) await api("PUT", `/v1/inventory/devices/${id}/group`, { group: name });
      else if (group) await api("DELETE", `/v1/inventory/devices/${id}/group/${encodeURIComponent(group)}`);
      toast(name ? `Device in group ${name}.` : "Device in no group.");
      devicePage(id);
    } catch (x) { err.textContent = x.message; }
  };
  return h("form", { class: "row", onsubmit: save }, input,
    h("datalist", { id: "group-names" }, names.map((n) => h("option", { value: n }))),
    h("button", { type: "submit", id: "group-save" }, "Set"), err);
}

// Dynamic groups (saved inventory filters): each with its terms and how many devices match
// now; defined here by one or more terms ("And" adds the term typed to the list, all must hold).
const OPS = [["$eq", "="], ["$ne", "≠"], ["$gt", ">"], ["$gte", "≥"], ["$lt", "<"], ["$lte", "≤"]];
function termText(t) {
  const op = (OPS.find(([o]) => o === t.type) || [t.type, t.type])[1];
  return `${t.scope}/${t.attribute} ${op} ${typeof t.value === "string" ? t.value : JSON.stringify(t.value)}`;
}
async function dynamicGroups() {
  const card = h("div", { class: "card", id: "dynamic-groups" });
  async function draw() {
    const list = await get("/v2/inventory/filters");
    const counts = await Promise.all(list.map(async (f) => (await api("GET", `/v2/inventory/filters/${f.id}/search?per_page=1`, undefined, true)).headers.get("x-total-count")));
    const name = h("input", { id: "dyn-name", placeholder: "name", "aria-label": "Dynamic group name" });
    const attr = h("input", { id: "dyn-attribute", placeholder: "attribute, e.g. site or tags/ring", "aria-label": "Attribute" });
    const op = h("select", { id: "dyn-op", "aria-label": "Operator" }, OPS.map(([o, t]) => h("option", { value: o }, t)));
    const value = h("input", { id: "dyn-value", placeholder: "value", "aria-label": "Value" });
    const err = h("span", { class: "error", role: "alert" });
    const terms = [];
    const termList = h("span", { id: "dyn-terms", class: "muted" });
    // The term typed in the fields, or none while its attribute is empty.
    const typed = () => {
      if (attr.value.trim() === "") return null;
      const [scope, attribute] = attr.value.includes("/") ? attr.value.split("/", 2) : ["inventory", attr.value];
      const v = value.value.trim() !== "" && !Number.isNaN(Number(value.value)) ? Number(value.value) : value.value;
      return { scope, attribute: attribute.trim(), type: op.value, value: v };
    };
    const addTerm = () => {
      const t = typed();
      if (!t) { err.textContent = "Type an attribute first."; return; }
      err.textContent = "";
      terms.push(t);
      attr.value = ""; value.value = "";
      termList.textContent = `${terms.map(termText).join(" and ")} and …`;
    };
    const define = async (e) => {
      e.preventDefault();
      err.textContent = "";
      const all = typed() ? [...terms, typed()] : terms;
      try {
        await api("POST", "/v2/inventory/filters", { name: name.value.trim(), terms: all });
        toast(`Dynamic group ${name.value.trim()} defined.`);
        draw();
      } catch (x) { err.textContent = x.message; }
    };
    card.replaceChildren(h("h2", {}, "Dynamic groups"),
      h("p", { class: "muted" }, "A deployment to a dynamic group also reaches the devices that match it later, while it runs."),
      list.length === 0 ? empty("No dynamic group.") : h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Terms"), h("th", {}, "Devices"), h("th", {}, ""))),
        h("tbody", {}, list.map((f, i) => h("tr", { "data-filter": f.name },
          h("td", {}, f.name), h("td", {}, f.terms.map(termText).join(" and ")), h("td", { class: "count" }, counts[i] || "0"),
          h("td", {}, h("button", { class: "danger", onclick: async () => { try { await api("DELETE", `/v2/inventory/filters/${f.id}`); toast(`Dynamic group ${f.name} deleted.`); draw(); } catch (x) { toast(x.message); } } }, "Delete")))))),
      h("form", { class: "row", id: "dyn-form", onsubmit: define }, name, termList, attr, op, value,
        h("button", { type: "button", id: "dyn-and", onclick: addTerm }, "And"), h("button", { type: "submit", id: "dyn-define" }, "Define"), err));
  }
  await draw();
  return card;
}

// ---- Artifacts ----
async function artifactsPage() {
  loading();
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
function statsBar(d) {
  const m = d.summary || { success: 0, failure: 0, skipped: 0, in_progress: 0, pending: 0, total: 0 };
  const total = m.total || 1;
  const part = (n, color) => h("i", { style: `width:${(100 * n) / total}%;background:${color}` });
  return h("div", { class: "bar", title: `${m.success} succeeded, ${m.failure} failed, ${m.skipped} skipped, ${m.in_progress} running, ${m.pending} pending` },
    part(m.success, "#2da44e"), part(m.skipped, "#8c959f"), part(m.failure, "#cf222e"), part(m.in_progress, "#54aeff"));
}
function deploymentRow(d) {
  return h("tr", { "data-deployment": d.id },
    h("td", {}, h("a", { href: `#/deployments/${d.id}` }, d.name)), h("td", {}, d.artifact_name), h("td", { class: "status" }, deploymentBadge(d)),
    h("td", { class: "progress" }, statsBar(d)), h("td", {}, when(d.created)));
}
// Redraws a shown row's status and progress only (its link stays the same element).
function refreshDeploymentRow(tr, d) {
  tr.querySelector("td.status").replaceChildren(deploymentBadge(d));
  tr.querySelector("td.progress").replaceChildren(statsBar(d));
}
function deploymentTable(list, none) {
  if (list.length === 0) return empty(none);
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Artifact"), h("th", {}, "Status"), h("th", {}, "Progress"), h("th", {}, "Created"))),
    h("tbody", {}, list.map(deploymentRow))));
}

// The phases text of the create form ("1, 10%, rest") as the API's phases; [] for one phase.
function parsePhases(text) {
  const parts = text.split(",").map((x) => x.trim()).filter((x) => x !== "");
  return parts.map((x) => {
    if (x === "rest") return {};
    const pct = /^(\d+)\s*%$/.exec(x);
    if (pct) return { batch_size: Number(pct[1]) };
    if (/^\d+$/.test(x)) return { devices: Number(x) };
    throw new ApiError(`"${x}" is not a phase size: write a number of devices, a percentage (10%) or "rest"`);
  });
}
// A plan's phases, and the devices it skips with the reason.
function planView(plan) {
  const skipped = plan.devices.filter((d) => d.outcome !== "update");
  return h("div", { class: "card", id: "plan" }, h("h2", {}, "Plan"),
    h("p", { id: "plan-totals" }, `${plan.totals.devices} devices: ${plan.totals.updates} would update (${size(plan.totals.bytes)}), ${plan.totals.skipped} skipped.`),
    h("div", { class: "scroll" }, h("table", { id: "plan-phases" }, h("thead", {}, h("tr", {}, h("th", {}, "Phase"), h("th", {}, "Devices"), h("th", {}, "Updates"), h("th", {}, "Bytes"), h("th", {}, "Opens at the earliest"))),
      h("tbody", {}, plan.phases.map((p) => h("tr", {}, h("td", {}, p.id), h("td", {}, p.device_count), h("td", {}, p.updates), h("td", {}, size(p.bytes)),
        h("td", {}, p.earliest_start ? when(p.earliest_start) : "when advanced")))))),
    skipped.length ? h("ul", { id: "plan-skipped" }, skipped.map((d) => h("li", {}, `${d.id.slice(0, 8)} (phase ${d.phase}): ${d.outcome}, ${d.reason || ""}`))) : "");
}
// A phased deployment's state: its phases, why it is paused, and the operator's buttons. A
// command's effect arrives as a live event (a fetch here could land after a newer event).
function rolloutView(d) {
  const r = d.rollout;
  if (!r) return "";
  const running = d.status !== "finished";
  const reason = h("input", { id: "rollout-reason", placeholder: "Why pause (optional)" });
  const act = (what, label, body) => h("button", { id: `rollout-${what}`, onclick: async () => {
    try { await api("POST", `/v1/deployments/deployments/${d.id}/${what}`, body ? body() : {}); toast(`Rollout ${label}.`); } catch (e) { toast(e.message); }
  } }, what[0].toUpperCase() + what.slice(1));
  return h("div", { class: "card", id: "rollout" },
    h("h2", { id: "rollout-phase" }, r.phases > 1 ? `Phase ${r.phase} of ${r.phases}` : "Rollout"),
    r.paused ? h("p", { class: "error", id: "rollout-paused", role: "status" }, `Paused: ${r.paused}`) :
      h("p", { class: "muted", id: "rollout-running" }, !running ? "Finished." : r.phases === 1 ? "One phase: every device at once." : `Advances ${r.options.advance === "manual" ? "by hand" : r.options.advance === "auto" ? "when its success threshold holds" : "at each phase's start time"}.`),
    r.halted ? h("p", { class: "error", id: "rollout-halted" }, "Held by the fleet-wide halt.") : "",
    installText(r.options, r.released) ? h("p", { class: "muted", id: "rollout-install" }, installText(r.options, r.released)) : "",
    running && r.install_held ? h("p", { class: "error", id: "rollout-held", role: "status" }, `Installs held: ${r.install_held}`) : "",
    running && r.gate_held ? h("p", { class: "error", id: "rollout-gate", role: "status" }, `Next phase held by a webhook gate: ${r.gate_held}`) : "",
    r.options.health ? healthChart(d.id) : "",
    h("div", { class: "scroll" }, h("table", { id: "rollout-phases" }, h("thead", {}, h("tr", {}, h("th", {}, "Phase"), h("th", {}, "Open"), h("th", {}, "Devices"), h("th", {}, "Succeeded"), h("th", {}, "Failed"), h("th", {}, "Running"), h("th", {}, "Pending"))),
      h("tbody", {}, (d.phases || []).map((p) => h("tr", { "data-phase": p.id }, h("td", {}, p.id), h("td", {}, p.open ? "yes" : (p.start_ts ? `at ${when(p.start_ts)}` : "not yet")), h("td", {}, p.device_count),
        h("td", {}, p.summary.success), h("td", {}, p.summary.failure), h("td", {}, p.summary.in_progress), h("td", {}, p.summary.pending)))))),
    running ? h("p", { class: "row" }, r.paused ? act("resume", "resumed") : [reason, act("pause", "paused", () => (reason.value ? { reason: reason.value } : {}))],
      r.phase < r.phases ? act("advance", "advanced") : "",
      (r.options.window || r.options.install === "download-only") && !r.released ? act("release", "released: its devices install now") : "") : "");
}
// An SVG element (the h() of SVG).
function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
// The health gate's comparison over time: the unhealthy share of the updated devices against
// the devices not yet updated, and the line above which the gate stops the rollout.
function healthChart(id) {
  const box = h("div", { class: "chart", id: "health-chart" }, h("p", { class: "muted" }, "Loading the health comparison…"));
  const load = () => get(`/v1/deployments/deployments/${id}/health`).then((hs) => {
    const share = (c) => (c.devices ? (100 * c.unhealthy) / c.devices : 0);
    const why = (c) => `${c.failing} failing, ${c.offline} offline, ${c.rebooted} rebooted`;
    // One sample is drawn as a level line across the chart.
    const pts = hs.samples.length === 1 ? [hs.samples[0], { ...hs.samples[0], ts: new Date(Date.parse(hs.samples[0].ts) + 1).toISOString() }] : hs.samples;
    if (!pts.length) {
      // The rollout job takes its first sample within seconds: look again while shown.
      box.replaceChildren(h("p", { class: "muted" }, "No health sample yet (one every 30 s while the rollout runs)."));
      setTimeout(() => { if (box.isConnected) load(); }, 3000);
      return;
    }
    const W = 600, H = 160, pad = 28;
    const t0 = Date.parse(pts[0].ts), t1 = Math.max(Date.parse(pts[pts.length - 1].ts), t0 + 1);
    const x = (p) => pad + ((Date.parse(p.ts) - t0) / (t1 - t0)) * (W - 2 * pad);
    const y = (v) => H - pad - (Math.min(v, 100) / 100) * (H - 2 * pad);
    const line = (f, cls) => svg("polyline", { class: cls, fill: "none", points: pts.map((p) => `${x(p).toFixed(1)},${y(f(p)).toFixed(1)}`).join(" ") });
    const last = pts[pts.length - 1];
    box.replaceChildren(
      h("h3", {}, "Health: updated devices against those not yet updated"),
      svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "unhealthy share over time" },
        svg("line", { class: "axis", x1: pad, y1: H - pad, x2: W - pad, y2: H - pad }),
        svg("text", { x: 2, y: y(100) + 4, class: "tick" }, "100%"), svg("text", { x: 2, y: y(0) + 4, class: "tick" }, "0%"),
        line((p) => Math.min(share(p.control) + hs.margin, 100), "limit"),
        line((p) => share(p.control), "control"), line((p) => share(p.updated), "updated"),
        svg("text", { x: W - pad - 200, y: 12, class: "tick legend-updated" }, "— updated"),
        svg("text", { x: W - pad - 130, y: 12, class: "tick legend-control" }, "— not yet updated")),
      h("p", { class: "muted", id: "health-now" },
        `Now: ${last.updated.unhealthy} of ${last.updated.devices} updated unhealthy (${share(last.updated).toFixed(0)}%: ${why(last.updated)}), ` +
        `${last.control.unhealthy} of ${last.control.devices} not yet updated (${share(last.control).toFixed(0)}%: ${why(last.control)}); ` +
        `the gate stops above the dashed line (not yet updated + ${hs.margin} points).`));
  }).catch((e) => box.replaceChildren(h("p", { class: "error" }, e.message)));
  load();
  return box;
}
// How a rollout's devices install, in words; "" when they install at once.
function installText(o, released) {
  const parts = [];
  if (o.install === "soft") parts.push("Soft: each device's consent hook may defer the install and the reboot.");
  if (o.install === "download-only") parts.push("Download-only: devices download and verify, then wait for the release.");
  if (o.window) parts.push(`Installs only in the window "${o.window.cron}" (${Math.round(o.window.duration_seconds / 60)} min, ${o.window.time_zone || "UTC"}).`);
  if (released) parts.push(`Released ${when(released)}.`);
  return parts.join(" ");
}

async function deploymentsPage() {
  loading();
  const seq = state.seq;
  const [list, artifacts, accepted, groups, dynamic] = await Promise.all([get("/v1/deployments/deployments?per_page=100"), get("/v1/deployments/artifacts"),
    get("/v2/devauth/devices?status=accepted&per_page=500"), get("/v1/inventory/groups"), get("/v2/inventory/filters")]);
  const names = [...new Set(artifacts.map((a) => a.name))];
  const name = h("input", { id: "deployment-name", required: true, value: "" });
  const artifact = h("select", { id: "deployment-artifact" }, names.map((n) => h("option", { value: n }, n)));
  const target = h("select", { id: "deployment-target" }, h("option", { value: "all" }, "All accepted devices"),
    groups.map((g) => h("option", { value: `group:${g}` }, `Group ${g}`)),
    dynamic.map((f) => h("option", { value: `dyn:${f.id}` }, `Dynamic group ${f.name} (and devices that match later)`)), h("option", { value: "pick" }, "Chosen devices"));
  const isDynamic = () => target.value.startsWith("dyn:");
  const picks = h("div", { hidden: true, class: "card" }, accepted.length === 0 ? empty("No accepted device.") :
    accepted.map((d) => h("label", { class: "row" }, h("input", { type: "checkbox", value: d.id, "data-pick": d.id, onchange: () => summary() }),
      `${d.id.slice(0, 8)} ${Object.values(d.identity_data || {}).join(" ")}`)));
  const matching = h("p", { id: "deployment-summary", class: "muted", "aria-live": "polite" });
  // A dynamic group's deployment may take at most this many devices (the first to match).
  const maxDevices = h("input", { id: "deployment-max", type: "number", min: 1, placeholder: "no limit" });
  const maxBox = h("div", { hidden: true }, h("label", { for: "deployment-max" }, "At most this many devices (the first to match, in admission order)"), maxDevices);
  const err = h("div", { class: "error", role: "alert" });
  const phases = h("input", { id: "deployment-phases", placeholder: "e.g. 1, 10%, rest (empty: all at once)" });
  const advance = h("select", { id: "deployment-advance" }, h("option", { value: "manual" }, "By hand"), h("option", { value: "auto" }, "When the success threshold holds"));
  const success = h("input", { id: "deployment-success", type: "number", min: 0, max: 100, placeholder: "100" });
  const failure = h("input", { id: "deployment-failure", type: "number", min: 0, max: 100, placeholder: "none" });
  const healthMargin = h("input", { id: "deployment-health", type: "number", min: 0, max: 100, placeholder: "none" });
  const install = h("select", { id: "deployment-install" }, h("option", { value: "forced" }, "At once"),
    h("option", { value: "soft" }, "Soft: the device's consent hook may defer"), h("option", { value: "download-only" }, "Download only: install on release"));
  const windowCron = h("input", { id: "deployment-window", placeholder: "cron, e.g. 0 22 * * MON-FRI (empty: any time)" });
  const windowMinutes = h("input", { id: "deployment-window-minutes", type: "number", min: 1, max: 10080, value: "60" });
  const zone = h("input", { id: "deployment-tz", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" });
  const planBox = h("div", {});
  let planned = null; // the digest of the plan shown, sent as expect_plan
  const halt = h("div", { class: "card", id: "halt" });
  async function drawHalt() {
    const hs = await get("/v1/deployments/halt");
    halt.replaceChildren(h("h2", {}, "Fleet-wide halt"), h("p", { id: "halt-status", class: hs.halted ? "error" : "muted" }, hs.halted ? `Every deployment is held: ${hs.reason}` : "Not engaged: deployments run."),
      h("button", { id: "halt-toggle", class: hs.halted ? "" : "danger", onclick: async () => {
        try { await api("PUT", "/v1/deployments/halt", hs.halted ? { halted: false } : { halted: true, reason: "halted from the web UI" }); drawHalt(); } catch (e) { toast(e.message); }
      } }, hs.halted ? "Release the halt" : "Halt every deployment"));
  }
  // The create body of the form, or an error the form shows.
  function body() {
    const b = { name: name.value || artifact.value, artifact_name: artifact.value };
    const list = parsePhases(phases.value);
    if (list.length) {
      b.phases = list;
      b.rollout = { advance: advance.value };
      if (failure.value !== "") b.rollout.failure_threshold = Number(failure.value);
      if (success.value !== "" && advance.value === "auto") b.rollout.success_threshold = Number(success.value);
      if (healthMargin.value !== "") b.rollout.health = { margin: Number(healthMargin.value), offline_after_seconds: 300 };
    }
    if (install.value !== "forced" || windowCron.value.trim() !== "") {
      b.rollout = b.rollout || {};
      if (install.value !== "forced") b.rollout.install = install.value;
      if (windowCron.value.trim() !== "") b.rollout.window = { cron: windowCron.value.trim(), duration_seconds: Math.round(Number(windowMinutes.value) * 60), time_zone: zone.value.trim() || "UTC" };
    }
    if (target.value === "all") b.all_devices = true;
    else if (isDynamic()) {
      b.filter_id = target.value.slice(4);
      if (maxDevices.value !== "") b.max_devices = Number(maxDevices.value);
    } else if (target.value === "pick") { b.devices = chosen(); if (!b.devices.length) throw new ApiError("Choose at least one device."); }
    return b;
  }
  const planButton = h("button", { type: "button", id: "deployment-plan", onclick: async () => {
    err.textContent = "";
    try {
      const b = body();
      if (target.value.startsWith("group:")) { b.devices = (await get(`/v1/inventory/groups/${encodeURIComponent(target.value.slice(6))}/devices?per_page=500`)); }
      const plan = await api("POST", isDynamic() ? "/v2/deployments/deployments/plan" : "/v1/deployments/deployments/plan", b);
      planned = target.value.startsWith("group:") ? null : plan.digest;
      planBox.replaceChildren(planView(plan));
      planBox.classList.remove("stale");
    } catch (x) { err.textContent = x.message; }
  } }, "Show the plan");
  const chosen = () => [...picks.querySelectorAll("input:checked")].map((i) => i.value);
  async function summary() {
    planned = null; planBox.replaceChildren(); // the plan shown no longer holds
    picks.hidden = target.value !== "pick";
    maxBox.hidden = !isDynamic();
    let n = accepted.length;
    if (target.value === "pick") n = chosen().length;
    else if (target.value.startsWith("group:")) n = (await get(`/v1/inventory/groups/${encodeURIComponent(target.value.slice(6))}/devices?per_page=500`)).length;
    else if (isDynamic()) n = Number((await api("GET", `/v2/inventory/filters/${target.value.slice(4)}/search?per_page=1`, undefined, true)).headers.get("x-total-count"));
    matching.textContent = `${n} device${n === 1 ? "" : "s"} will get ${artifact.value || "the artifact"} (if compatible).`;
  }
  target.onchange = summary; artifact.onchange = summary;
  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      const b = body();
      if (planned) b.expect_plan = planned;
      if (target.value.startsWith("group:")) await api("POST", `/v1/deployments/deployments/group/${encodeURIComponent(target.value.slice(6))}`, b);
      else await api("POST", isDynamic() ? "/v2/deployments/deployments" : "/v1/deployments/deployments", b);
      toast("Deployment created.");
      deploymentsPage();
    } catch (x) { err.textContent = x.message; }
  } }, h("h2", {}, "New deployment"),
    names.length === 0 ? empty("Upload an artifact first.") : [
      h("label", { for: "deployment-name" }, "Name"), name, h("label", { for: "deployment-artifact" }, "Artifact"), artifact,
      h("label", { for: "deployment-target" }, "Devices"), target, picks, matching, maxBox,
      h("label", { for: "deployment-phases" }, "Phases"), phases,
      h("label", { for: "deployment-advance" }, "Next phase opens"), advance,
      h("div", { class: "row" }, h("div", {}, h("label", { for: "deployment-success" }, "Success threshold %"), success),
        h("div", {}, h("label", { for: "deployment-failure" }, "Pause above failure %"), failure),
        h("div", {}, h("label", { for: "deployment-health" }, "Health gate margin (points)"), healthMargin)),
      h("label", { for: "deployment-install" }, "Install"), install,
      h("label", { for: "deployment-window" }, "Maintenance window (devices download outside it, install inside)"), windowCron,
      h("div", { class: "row" }, h("div", {}, h("label", { for: "deployment-window-minutes" }, "Window length (minutes)"), windowMinutes),
        h("div", {}, h("label", { for: "deployment-tz" }, "Time zone"), zone)),
      err, planBox,
      h("p", { class: "row" }, planButton, h("button", { class: "primary", type: "submit", id: "deployment-create" }, "Create deployment"))]);
  // An edit makes the plan shown stale: dimmed, not removed (removing it would move the
  // "Show the plan" button from under the pointer that is clicking it), and never sent.
  for (const input of [phases, advance, success, failure, healthMargin, maxDevices, name, install, windowCron, windowMinutes, zone]) input.addEventListener("change", () => { planned = null; planBox.classList.add("stale"); });
  render(seq, h("h1", {}, "Deployments"), halt, form, h("h2", {}, "All deployments"), deploymentTable(list, "No deployment yet."));
  drawHalt();
  if (names.length) summary();
  const table = () => document.querySelector("#main table tbody");
  onEvent(async (e) => {
    const p = progressOf(e);
    if (location.hash !== "#/deployments") return;
    if (!p) { if (e.type === "lagged") deploymentsPage(); return; }
    const known = list.find((d) => d.id === p.id);
    if (!known) {
      // A new deployment: add its row (the rest of the page, the form included, stays).
      const fresh = await get(`/v1/deployments/deployments/${p.id}`);
      if (location.hash !== "#/deployments" || list.some((d) => d.id === fresh.id)) return;
      list.unshift(fresh);
      if (table()) table().prepend(deploymentRow(fresh)); else deploymentsPage();
      return;
    }
    applyProgress(known, p);
    const old = document.querySelector(`tr[data-deployment="${CSS.escape(known.id)}"]`);
    if (old) refreshDeploymentRow(old, known);
  });
}

async function deploymentPage(id) {
  loading();
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
      h("td", { class: "substate" }, x.substate || "", x.retried ? h("span", { class: "retried" }, ` (started over ${x.retried}×)`) : ""),
      h("td", {}, x.status === "failure" ? h("button", { "data-log": x.id, onclick: async () => {
        const text = await api("GET", `/v1/deployments/deployments/${id}/devices/${x.id}/log`);
        logBox.replaceChildren(h("h2", {}, `Log of ${x.id.slice(0, 8)}`), h("pre", { id: "device-log" }, text));
        logBox.scrollIntoView();
      } }, "Show log") : ""));
    rows.set(x.id, r);
    known.set(x.id, x);
    return r;
  };
  const known = new Map();
  const status = h("span", { id: "deployment-status" }, deploymentBadge(d));
  const rolloutBox = h("div", {});
  // Redraws the phases on every change, the rest (the buttons) only when the state changed:
  // a click on a button just replaced would be lost.
  let drawn = null;
  const drawRollout = () => {
    const r = d.rollout;
    const key = JSON.stringify([d.status, r && [r.phase, r.paused, r.halted]]);
    const fresh = rolloutView(d);
    const table = rolloutBox.querySelector("#rollout-phases");
    if (key === drawn && table && fresh) table.replaceWith(fresh.querySelector("#rollout-phases"));
    else { rolloutBox.replaceChildren(fresh); drawn = key; }
  };
  drawRollout();
  render(seq, h("h1", {}, `Deployment ${d.name}`),
    h("div", { class: "card" }, h("dl", {}, h("dt", {}, "Artifact"), h("dd", {}, d.artifact_name), h("dt", {}, "Status"), h("dd", {}, status),
      h("dt", {}, "Devices"), h("dd", {}, d.filter ? `${devices.length}${d.max_devices ? ` of at most ${d.max_devices}` : ""}` : d.max_devices || devices.length),
      d.filter ? [h("dt", {}, "Dynamic group"), h("dd", { id: "deployment-filter" }, `${d.filter.name}: ${d.filter.terms.map(termText).join(" and ")}; devices that match later join`)] : "",
      h("dt", {}, "Created"), h("dd", {}, when(d.created)),
      d.retries ? [h("dt", {}, "Retries"), h("dd", {}, `a failed device starts over up to ${d.retries}×`)] : ""),
      d.status !== "finished" ? h("p", {}, h("button", { class: "danger", id: "abort", onclick: async () => {
        if (!confirm("Abort this deployment? Devices that did not finish roll back.")) return;
        try { await api("PUT", `/v1/deployments/deployments/${id}/status`, { status: "aborted" }); toast("Deployment aborted."); deploymentPage(id); } catch (e) { toast(e.message); }
      } }, "Abort")) : ""),
    rolloutBox,
    h("h2", {}, "Statistics"), stats,
    h("h2", {}, "Devices"),
    devices.length === 0 ? empty("No device in this deployment.") :
      h("div", { class: "scroll" }, h("table", { id: "deployment-devices" }, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "Status"), h("th", {}, "Detail"), h("th", {}, ""))),
        h("tbody", {}, devices.map(row)))),
    logBox);
  onEvent((e) => {
    if (location.hash !== `#/deployments/${id}`) return;
    if (e.type === "device_deployment" && e.deployment_id === id) {
      const old = rows.get(e.device_id);
      const was = known.get(e.device_id);
      // Back to pending: the device failed and starts over (retries); its count is in the list.
      if (was && was.status !== "pending" && e.status === "pending") { deploymentPage(id); return; }
      if (old) old.replaceWith(row({ ...was, id: e.device_id, status: e.status, substate: e.substate }));
    }
    const p = progressOf(e);
    if (p && p.id === id && !(e.type === "deployment" && p.status === "finished")) {
      applyProgress(d, p);
      renderStats(d.statistics);
      status.replaceChildren(deploymentBadge(d));
      drawRollout();
      if (d.status === "finished") { const a = document.getElementById("abort"); if (a) a.remove(); }
    } else if (e.type === "lagged" || (p && p.id === id)) deploymentPage(id); // aborted: every row changed
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
    else { onEvent(() => {}); show(h("h1", {}, "Not found"), empty("There is no such page."), h("a", { href: "#/" }, "Back to the dashboard")); }
    main().focus({ preventScroll: true });
  } catch (e) {
    onEvent(() => {});
    if (state.token) show(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message), h("button", { onclick: route }, "Try again"));
  }
}
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => { toast(e.reason && e.reason.message ? e.reason.message : String(e.reason)); e.preventDefault(); });
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => logout(true));
  route();
});
