// A minimal cards page over the REST API (the full UI replaces it).
"use strict";
let csrf = "";
let next = null;

async function api(path, options = {}) {
  const headers = Object.assign({ "content-type": "application/json" }, options.headers || {});
  if (options.method && options.method !== "GET") headers["x-csrf-token"] = csrf;
  const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

function cell(row, text, numeric) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (numeric) td.className = "num";
  row.appendChild(td);
}

async function loadCards() {
  const query = next == null ? "" : `?after=${next}`;
  const page = await api(`/api/v1/cards${query}`);
  const body = document.querySelector("#cards tbody");
  for (const card of page.cards) {
    const row = document.createElement("tr");
    cell(row, card.category);
    cell(row, card.status);
    cell(row, card.company);
    cell(row, card.product);
    cell(row, card.psa_quantity, true);
    cell(row, card.vendor_quantity, true);
    cell(row, card.target_quantity, true);
    cell(row, card.money && card.money.delta, true);
    cell(row, card.effective_date);
    body.appendChild(row);
  }
  next = page.next;
  document.getElementById("more").hidden = next == null;
}

async function start() {
  const error = document.getElementById("error");
  try {
    const me = await api("/api/v1/session");
    csrf = me.csrf_token || "";
    document.getElementById("who").textContent = `${me.username} (${me.role})`;
    const totals = await api("/api/v1/cards/totals");
    document.getElementById("totals").textContent =
      `At stake ${totals.totals.at_stake} — under-billed ${totals.totals.under_billed}, over-billed ${totals.totals.over_billed}`;
    await loadCards();
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

document.getElementById("more").addEventListener("click", () => loadCards());
document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/v1/session", { method: "DELETE" }).catch(() => null);
  window.location.assign("/login");
});
start();
