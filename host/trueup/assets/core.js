// Trueup UI core: the API client (session cookie + X-CSRF-Token), the
// element builder, the alert, formatting, live events and the router.
// No framework, no build step; every page is a function that renders into
// <main id="page">.
"use strict";

const T = (window.Trueup = {
  me: null,
  csrf: "",
  routes: [],
  listeners: new Set(),
  cardFilter: "",
});

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

T.api = async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  const headers = {};
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = T.csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new ApiError(401, "unauthenticated", "Your session has ended; log in again.");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const err = body.error || {};
    let message = err.message || response.statusText || `HTTP ${response.status}`;
    if (err.request_id) message += ` (request ${err.request_id})`;
    const retry = response.headers.get("retry-after");
    if (retry) message += ` — retry after ${retry} s`;
    throw new ApiError(response.status, err.code || "error", message, err.request_id);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
};

// Runs `fn`, showing any error in the alert; returns its value or null.
T.guard = async function guard(fn) {
  try {
    return await fn();
  } catch (e) {
    T.showError(e);
    return null;
  }
};

T.showError = function showError(e) {
  const box = document.getElementById("alert");
  const code = e && e.code ? `[${e.code}] ` : "";
  document.getElementById("alert-text").textContent = code + (e && e.message ? e.message : String(e));
  box.hidden = false;
};

T.clearError = function clearError() {
  document.getElementById("alert").hidden = true;
};

let flashTimer = null;
T.flash = function flash(text) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => (box.hidden = true), 4000);
};

// ------------------------------------------------------------- elements

// h("div", {class: "x", id: "y", text: "z", "data-key": k, onclick: fn}, ...children)
T.h = function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.textContent = String(value);
    else if (name === "class") el.className = value;
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else if (name === "checked") el.checked = Boolean(value);
    else if (name === "selected") el.selected = Boolean(value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
};

T.clear = function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
};

T.table = function table(id, headers, rows, attrs) {
  const h = T.h;
  return h(
    "table",
    Object.assign({ id }, attrs || {}),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, rows)
  );
};

T.td = (value, cls) => T.h("td", { class: cls, text: value == null ? "—" : value });

T.section = (title, ...children) => T.h("section", { class: "panel" }, T.h("h2", { text: title }), children);

// A labelled form field.
T.field = (label, input) => T.h("label", { class: "field" }, T.h("span", { text: label }), input);

// ------------------------------------------------ confirming PSA writes

// Before any approval or adjustment is sent: asks the server what it would
// write (POST /api/v1/decisions/preview, the same body as the decision),
// lists it card by card with totals in a modal dialog, and resolves true
// only when the person confirms. Nothing is written while it is open.
T.confirmWrites = async function confirmWrites(body, companies) {
  const h = T.h;
  const preview = await T.guard(() => T.api("/api/v1/decisions/preview", { method: "POST", body }));
  if (!preview) return false;
  const name = (id) => (companies ? T.companyName(companies, id) : id);
  const rows = preview.writes.map((w) =>
    h(
      "tr",
      { "data-testid": "confirm-row", "data-key": w.card_key },
      T.td(name(w.company)),
      T.td(w.product),
      T.td(w.line ? `${w.contract} / line ${w.line}` : `${w.contract} (new line)`),
      T.td(`${T.qty(w.from_quantity)} → ${w.to_quantity}`, "num"),
      T.td(w.unit_price == null ? "—" : T.money(w.unit_price), "num"),
      T.td(w.monthly_effect == null ? "—" : T.signedMoney(w.monthly_effect), "num"),
      h("td", { "data-testid": "confirm-date", text: w.effective_date })
    )
  );
  const t = preview.totals;
  const send = h("button", { type: "button", id: "confirm-send", class: "primary", text: `Write ${t.writes} change(s) to the PSA`, disabled: !t.writes });
  const cancel = h("button", { type: "button", id: "confirm-cancel", text: "Cancel" });
  const dialog = h(
    "dialog",
    { id: "confirm-writes", "data-testid": "confirm-writes", class: "confirm" },
    h("h2", { text: t.writes ? "Confirm what will be written to the PSA" : "Nothing to write" }),
    t.writes
      ? T.table("confirm-table", ["Account", "Service", "Contract", "Quantity", "Unit price", "Per month", "Effective"], rows)
      : null,
    h(
      "p",
      { id: "confirm-totals", "data-testid": "confirm-totals" },
      `${t.writes} write(s) · quantity ${Number(t.quantity_change) >= 0 ? "+" : ""}${t.quantity_change} · ${T.signedMoney(t.monthly_effect)} per month`,
      t.unpriced ? ` (${t.unpriced} without a known price)` : ""
    ),
    preview.refused.length
      ? h(
          "div",
          { id: "confirm-refused" },
          h("p", { text: `${preview.refused.length} card(s) would be refused:` }),
          h("ul", {}, preview.refused.map(([k, why]) => h("li", { text: `${k.slice(0, 8)}… ${why}` })))
        )
      : null,
    h("div", { class: "actions" }, send, cancel)
  );
  document.body.appendChild(dialog);
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    send.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    dialog.showModal();
  });
};

// What a bulk decision did: how many decided and queued, and each refused
// card with the server's reason, kept on the page until the next action.
T.decisionSummary = function decisionSummary(what, answer) {
  const h = T.h;
  const decided = answer.decided || answer.staged || [];
  return h(
    "div",
    { id: "bulk-result", class: "panel", "data-testid": "bulk-result" },
    h(
      "p",
      { id: "bulk-result-counts" },
      `${what}: ${decided.length} ${answer.staged ? "staged" : "decided"}`,
      answer.write_backs != null ? `, ${answer.write_backs} write-back(s) queued` : "",
      answer.refused.length ? `, ${answer.refused.length} refused` : ""
    ),
    answer.refused.length
      ? h("ul", { id: "bulk-result-refused" }, answer.refused.map(([k, why]) => h("li", { "data-key": k, text: `${k.slice(0, 8)}… ${why}` })))
      : null
  );
};

// ----------------------------------------------------------- formatting

T.money = function money(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString("en-US", { style: "currency", currency: "USD" });
};

T.signedMoney = function signedMoney(value) {
  const n = Number(value);
  if (!Number.isFinite(n) || n === 0) return T.money(value);
  return (n > 0 ? "+" : "−") + T.money(Math.abs(n));
};

T.qty = (value) => (value === null || value === undefined ? "—" : String(value));

T.when = function when(value) {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toISOString().replace("T", " ").slice(0, 19) + "Z";
};

T.CATEGORIES = [
  ["new_revenue", "New revenue"],
  ["reconcile", "Quantity differs"],
  ["no_change", "No change"],
  ["no_vendor_data", "No vendor data"],
  ["unmapped", "Unmapped"],
  ["rule_error", "Rule error"],
];
T.categoryLabel = (c) => (T.CATEGORIES.find(([k]) => k === c) || [c, c])[1];
T.STATUSES = ["open", "approved", "dismissed", "snoozed", "excluded"];

T.can = function can(role) {
  const order = { viewer: 0, approver: 1, admin: 2 };
  return T.me && order[T.me.role] >= order[role];
};

// Companies by id (for names), loaded once.
let companiesPromise = null;
T.companies = function companies() {
  if (!companiesPromise) {
    companiesPromise = T.api("/api/v1/companies")
      .then((list) => new Map(list.map((c) => [c.id, c])))
      .catch(() => new Map());
  }
  return companiesPromise;
};
T.companyName = (map, id) => (id == null ? "(no company)" : (map.get(id) && map.get(id).name) || id);

// ------------------------------------------------------------ live events

// Subscribers get (name, data) for every SSE event of /api/v1/events.
T.onEvent = function onEvent(fn) {
  T.listeners.add(fn);
  return () => T.listeners.delete(fn);
};

T.startEvents = function startEvents() {
  if (!window.EventSource) return;
  const live = document.getElementById("live");
  const source = new EventSource("/api/v1/events");
  source.onopen = () => {
    live.textContent = "● live";
    live.className = "live on";
  };
  source.onerror = () => {
    live.textContent = "○ reconnecting";
    live.className = "live off";
  };
  for (const name of ["sync_progress", "sync_finished", "reconciled", "job_finished", "write_back", "lagged"]) {
    source.addEventListener(name, (event) => {
      let data = {};
      try {
        data = JSON.parse(event.data);
      } catch (_) {
        data = {};
      }
      for (const fn of Array.from(T.listeners)) fn(name, data);
    });
  }
};

// ---------------------------------------------------------------- router

// T.route(/^\/app\/cards\/([0-9a-f]+)$/, "cards", render) — render(main, match, query)
T.route = function route(pattern, nav, render) {
  T.routes.push({ pattern, nav, render });
};

let pageCleanup = [];
T.onLeave = (fn) => pageCleanup.push(fn);

T.navigate = function navigate(url, replace) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  T.render();
};

T.render = async function render() {
  for (const fn of pageCleanup) fn();
  pageCleanup = [];
  T.clearError();
  const path = window.location.pathname.replace(/\/+$/, "") || "/app";
  const query = new URLSearchParams(window.location.search);
  const main = T.clear(document.getElementById("page"));
  let found = null;
  let match = null;
  for (const r of T.routes) {
    match = path.match(r.pattern);
    if (match) {
      found = r;
      break;
    }
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", Boolean(found) && a.dataset.nav === found.nav);
  }
  if (!found) {
    main.appendChild(T.h("p", { text: `No page at ${path}.` }));
    return;
  }
  main.dataset.page = found.nav;
  await T.guard(() => found.render(main, match, query));
};

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  T.navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", () => T.render());

T.link = (href, text, attrs) => T.h("a", Object.assign({ href, "data-link": true, text }, attrs || {}));
