// The cards page (/app/cards) and a card in full (/app/cards/{key}).
"use strict";
(function () {
  const T = window.Trueup;
  const h = T.h;
  const FILTERS = ["category", "vendor", "tag", "status", "write_back", "company"];

  function filterQuery(query) {
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = query.get(name);
      if (v) q.set(name, v);
    }
    return q;
  }

  function withQuery(path, q) {
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  // The PSA side of a card. A product billed on several of the company's
  // lines is compared against all of them, so the card shows the others
  // too: otherwise "PSA 1 · vendor 3 · variance 0" does not add up.
  function psaQuantity(card) {
    const own = T.qty(card.psa_quantity);
    return card.psa_quantity_elsewhere != null ? `${own} + ${T.qty(card.psa_quantity_elsewhere)} on other lines` : own;
  }

  // What an approved card's write-back says, in one line: what was approved
  // (the quantity and its first day) and what became of it (the PSA records
  // and when, waiting, needing review, or refused in the PSA's words).
  // `wb` is the list's write_back summary, or an outbox entry adapted by
  // writeBackOf.
  function writeBackLine(wb) {
    if (!wb) return "";
    const approved = wb.quantity != null ? `approved for ${wb.quantity}${wb.effective_date ? ` from ${wb.effective_date}` : ""}` : "approved";
    const records = (wb.record_ids || []).join(", ");
    switch (wb.status) {
      case "applied":
        return `${approved} · applied as ${records ? `record ${records}` : "requested"} on ${T.when(wb.finished_at)}`;
      case "needs_review":
        return `${approved} · needs review: ${wb.error || "the PSA holds something else"}`;
      case "rejected":
        return `${approved} · failed: ${wb.error || "the PSA refused it"}`;
      case "cancelled":
        return `${approved} · cancelled before it was written`;
      case "in_flight":
        return `${approved} · being written`;
      default:
        return `${approved} · waiting to be written${wb.error ? ` (last try: ${wb.error})` : ""}`;
    }
  }

  function writeBackOf(entry) {
    if (!entry) return null;
    const change = entry.change || {};
    return {
      status: entry.status,
      quantity: change.new_quantity,
      effective_date: change.effective_date,
      record_ids: entry.result ? entry.result.record_ids : [],
      finished_at: entry.finished_at,
      error: entry.error,
    };
  }

  function text(value) {
    if (value == null) return "—";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  // ------------------------------------------------------------ cards page

  T.route(/^\/app(\/cards)?$/, "cards", async (main, _m, query) => {
    const filters = filterQuery(query);
    T.cardFilter = filters.toString();
    const view = query.get("view") === "list" ? "list" : "cards";
    const group = query.get("group") || "";
    const selected = new Set();
    const approver = T.can("approver");

    const setParam = (name, value) => {
      const q = new URLSearchParams(window.location.search);
      if (value) q.set(name, value);
      else q.delete(name);
      T.navigate(withQuery("/app/cards", q), true);
    };

    const [companies, vendorGroups, tags] = await Promise.all([
      T.companies(),
      T.api("/api/v1/cards/groups?by=vendor").catch(() => ({ groups: [] })),
      T.api("/api/v1/tags").catch(() => []),
    ]);

    main.appendChild(h("h1", { text: "Service cards" }));
    const totalsBox = h("div", { id: "totals", class: "totals", "data-testid": "totals" }, "Loading totals…");
    main.appendChild(totalsBox);

    // Filters.
    const select = (id, label, name, options, none) =>
      T.field(
        label,
        h(
          "select",
          {
            id,
            "data-testid": id,
            onchange: (e) => setParam(name, e.target.value),
          },
          h("option", { value: "", text: none || "All" }),
          options.map(([value, label]) => h("option", { value, text: label, selected: query.get(name) === value }))
        )
      );
    const vendors = vendorGroups.groups.filter((g) => g.key != null).map((g) => [g.key, g.key]);
    const bar = h(
      "div",
      { class: "filters", id: "filters" },
      select("filter-vendor", "Vendor", "vendor", vendors),
      select("filter-category", "Category", "category", T.CATEGORIES),
      select(
        "filter-tag",
        "Tag",
        "tag",
        tags.map((t) => [t.tag, `${t.tag} (${t.cards})`])
      ),
      select(
        "filter-status",
        "Status",
        "status",
        T.STATUSES.map((s) => [s, s])
      ),
      select("filter-write-back", "Write-back", "write_back", [
        ["needs_review", "needs review"],
        ["pending", "pending"],
        ["failed", "failed"],
        ["applied", "applied"],
      ]),
      select("group-by", "Group by", "group", [
        ["company", "Account"],
        ["product", "Service"],
        ["contract", "Contract"],
      ], "No grouping"),
      h(
        "div",
        { class: "toggle" },
        h("button", {
          type: "button",
          id: "view-cards",
          class: view === "cards" ? "on" : "",
          text: "Cards",
          onclick: () => setParam("view", ""),
        }),
        h("button", {
          type: "button",
          id: "view-list",
          class: view === "list" ? "on" : "",
          text: "List",
          onclick: () => setParam("view", "list"),
        })
      ),
      h("a", {
        id: "export-csv",
        class: "button",
        href: withQuery("/api/v1/cards/export.csv", filters),
        text: "Export CSV",
      })
    );
    main.appendChild(bar);
    if (query.get("company")) {
      main.appendChild(
        h(
          "p",
          { class: "chip" },
          `Account: ${T.companyName(companies, query.get("company"))} `,
          h("button", { type: "button", id: "clear-company", text: "×", onclick: () => setParam("company", "") })
        )
      );
    }

    // Bulk actions.
    const count = h("span", { id: "selection-count", "data-testid": "selection-count", text: "0 selected" });
    const input = (id, type, placeholder) => h("input", { id, type, placeholder, "aria-label": placeholder });
    const bulkDate = input("bulk-effective-date", "date", "Effective date");
    const snoozeDate = input("bulk-snooze-date", "date", "Snooze until");
    const excludeReason = input("bulk-exclude-reason", "text", "Exclude reason");
    const tagName = input("bulk-tag-name", "text", "Tag");
    // The outcome of the last bulk action stays shown (decided, refused
    // with the server's reasons) until the next one.
    const resultBox = h("div", { id: "bulk-result-box" });
    const showResult = (what, answer) => {
      T.clear(resultBox).appendChild(T.decisionSummary(what, answer));
      T.flash(`${what}: ${(answer.decided || answer.staged || []).length} card(s)`);
    };
    const decide = async (action, what) => {
      if (!selected.size) return T.showError(new Error("Select cards first."));
      const body = { cards: Array.from(selected), action };
      // Anything that writes to the PSA is confirmed first, from the
      // server's own preview of it.
      if ((action.action === "approve" || action.action === "adjust") && !(await T.confirmWrites(body, companies))) return;
      const answer = await T.guard(() => T.api("/api/v1/decisions", { method: "POST", body }));
      if (!answer) return;
      showResult(what, answer);
      await loadCards(true);
    };
    const stage = async (body, what) => {
      if (!selected.size) return T.showError(new Error("Select cards first."));
      const answer = await T.guard(() =>
        T.api("/api/v1/cards/stage", { method: "POST", body: Object.assign({ cards: Array.from(selected) }, body) })
      );
      if (!answer) return;
      showResult(what, answer);
      await loadCards(true);
    };
    const bulk = h(
      "div",
      { id: "bulk", class: "bulk needs-approver", "data-testid": "bulk" },
      h("label", { class: "inline" }, h("input", { type: "checkbox", id: "select-all", onchange: (e) => selectAll(e.target.checked) }), " all shown"),
      count,
      h("button", { type: "button", id: "bulk-approve", text: "Approve", onclick: () => decide({ action: "approve" }, "Approved") }),
      h("button", { type: "button", id: "bulk-dismiss", text: "Dismiss", onclick: () => decide({ action: "dismiss" }, "Dismissed") }),
      h(
        "span",
        { class: "group" },
        snoozeDate,
        h("button", {
          type: "button",
          id: "bulk-snooze",
          text: "Snooze",
          onclick: () =>
            decide(
              { action: "snooze", until: snoozeDate.value ? { date: snoozeDate.value } : "numbers_change" },
              "Snoozed"
            ),
        })
      ),
      h(
        "span",
        { class: "group" },
        excludeReason,
        h("button", {
          type: "button",
          id: "bulk-exclude",
          text: "Exclude",
          onclick: () => decide({ action: "exclude", reason: excludeReason.value || "excluded in bulk" }, "Excluded"),
        })
      ),
      h(
        "span",
        { class: "group" },
        tagName,
        h("button", {
          type: "button",
          id: "bulk-tag",
          text: "Tag",
          onclick: async () => {
            if (!selected.size || !tagName.value) return T.showError(new Error("Select cards and name a tag."));
            const ok = await T.guard(() =>
              T.api("/api/v1/tags", { method: "POST", body: { cards: Array.from(selected), tag: tagName.value } }).then(() => true)
            );
            if (ok) {
              T.flash(`Tagged ${selected.size} card(s) ${tagName.value}`);
              await loadCards(true);
            }
          },
        })
      ),
      h(
        "span",
        { class: "group" },
        bulkDate,
        h("button", {
          type: "button",
          id: "bulk-effective",
          text: "Set effective date",
          // Stages the date (nothing is written to the PSA); approving
          // the cards later uses it, after the confirmation.
          onclick: () => {
            if (!bulkDate.value) return T.showError(new Error("Pick an effective date."));
            return stage({ effective_date: bulkDate.value }, "Effective date staged");
          },
        }),
        h("button", {
          type: "button",
          id: "bulk-unstage",
          text: "Clear staged",
          onclick: async () => {
            if (!selected.size) return T.showError(new Error("Select cards first."));
            const ok = await T.guard(() =>
              T.api("/api/v1/cards/unstage", { method: "POST", body: { cards: Array.from(selected) } }).then(() => true)
            );
            if (ok) {
              T.flash(`Cleared the staged change of ${selected.size} card(s)`);
              await loadCards(true);
            }
          },
        })
      )
    );
    if (approver && !group) {
      main.appendChild(bulk);
      main.appendChild(resultBox);
    }

    const listBox = h("div", { id: "card-list", class: view === "list" ? "list-view" : "card-view", "data-testid": "card-list" });
    main.appendChild(listBox);
    const more = h("button", { type: "button", id: "more", text: "More", hidden: true });
    main.appendChild(more);

    const updateCount = () => {
      count.textContent = `${selected.size} selected`;
    };
    const selectAll = (on) => {
      for (const box of listBox.querySelectorAll("input.card-select")) {
        box.checked = on;
        if (on) selected.add(box.dataset.key);
        else selected.delete(box.dataset.key);
      }
      updateCount();
    };
    const checkbox = (card) =>
      approver
        ? h("input", {
            type: "checkbox",
            class: "card-select",
            "data-key": card.key,
            "aria-label": "Select card",
            checked: selected.has(card.key),
            onchange: (e) => {
              if (e.target.checked) selected.add(card.key);
              else selected.delete(card.key);
              updateCount();
            },
          })
        : null;

    // A change staged on the card (not yet approved, nothing written).
    const stagedBadge = (card) => {
      const staged = card.state && card.state.staged;
      if (!staged) return null;
      const parts = [];
      if (staged.quantity != null) parts.push(`for ${staged.quantity}`);
      if (staged.effective_date) parts.push(`from ${staged.effective_date}`);
      return h(
        "span",
        { class: `badge staged${card.stage_numbers_changed ? " stale" : ""}`, "data-testid": "staged", "data-date": staged.effective_date || "" },
        `staged ${parts.join(" ")}`,
        card.stage_numbers_changed ? " · numbers changed since" : ""
      );
    };
    const wbText = (card) =>
      card.write_back ? ` · ${writeBackLine(card.write_back)}` : card.state && card.state.write_back ? ` · write-back ${card.state.write_back}` : "";
    const cardTile = (card) =>
      h(
        "article",
        {
          class: `card-item cat-${card.category}`,
          "data-testid": "card",
          "data-key": card.key,
          "data-category": card.category,
          "data-status": card.status,
        },
        h(
          "div",
          { class: "card-head" },
          checkbox(card),
          h("span", { class: `badge cat-${card.category}`, text: T.categoryLabel(card.category) }),
          h("span", { class: `badge status-${card.status}`, "data-testid": "card-status", text: card.status + wbText(card) }),
          card.state && card.state.write_back === "needs_review"
            ? h("span", { class: "badge wb-needs_review", "data-testid": "needs-review", text: "needs review" })
            : null,
          stagedBadge(card)
        ),
        h("a", {
          href: `/app/cards/${card.key}`,
          "data-link": true,
          class: "card-open",
          "data-testid": "card-open",
          text: `${T.companyName(companies, card.company)} — ${card.product || "(no product)"}`,
        }),
        h(
          "div",
          { class: "qty" },
          h("span", { text: `PSA ${psaQuantity(card)}` }),
          h("span", { text: `vendor ${T.qty(card.vendor_quantity)}` }),
          card.target_quantity != null ? h("strong", { text: `→ ${card.target_quantity}` }) : null
        ),
        h(
          "div",
          { class: "money" },
          h("span", { class: Number(card.money && card.money.delta) >= 0 ? "up" : "down", text: T.signedMoney(card.money && card.money.delta) }),
          card.effective_date ? h("span", { text: ` from ${card.effective_date}` }) : null
        ),
        card.tags.length ? h("div", { class: "tags" }, card.tags.map((t) => h("span", { class: "tag", text: t }))) : null
      );
    const cardRow = (card) =>
      h(
        "tr",
        {
          class: "card-item",
          "data-testid": "card",
          "data-key": card.key,
          "data-category": card.category,
          "data-status": card.status,
        },
        h("td", {}, checkbox(card)),
        h("td", {}, h("span", { class: `badge cat-${card.category}`, text: T.categoryLabel(card.category) })),
        h("td", {}, h("span", { class: `badge status-${card.status}`, "data-testid": "card-status", text: card.status + wbText(card) })),
        h("td", {}, h("a", { href: `/app/cards/${card.key}`, "data-link": true, class: "card-open", "data-testid": "card-open", text: T.companyName(companies, card.company) })),
        T.td(card.product),
        T.td(card.contract),
        T.td(psaQuantity(card), "num"),
        T.td(T.qty(card.vendor_quantity), "num"),
        T.td(T.qty(card.target_quantity), "num"),
        T.td(T.signedMoney(card.money && card.money.delta), "num"),
        h("td", {}, card.effective_date || "—", " ", stagedBadge(card)),
        T.td(card.tags.join(", "))
      );

    let next = null;
    let tbody = null;
    async function loadCards(reset) {
      if (reset) {
        next = null;
        selected.clear();
        updateCount();
        T.clear(listBox);
        tbody = null;
        loadTotals();
      }
      const q = new URLSearchParams(filters);
      q.set("limit", "60");
      if (next != null) q.set("after", String(next));
      const page = await T.api(withQuery("/api/v1/cards", q));
      if (!page.run) {
        listBox.appendChild(h("p", { class: "empty", text: "No reconcile has run yet: sync and reconcile from Integrations." }));
        return;
      }
      if (view === "list") {
        if (!tbody) {
          const table = T.table(
            "card-table",
            ["", "Category", "Status", "Account", "Service", "Contract", "PSA", "Vendor", "Proposed", "Money Δ", "Effective", "Tags"],
            []
          );
          tbody = table.querySelector("tbody");
          listBox.appendChild(table);
        }
        for (const card of page.cards) tbody.appendChild(cardRow(card));
      } else {
        for (const card of page.cards) listBox.appendChild(cardTile(card));
      }
      if (!page.cards.length && next == null) listBox.appendChild(h("p", { class: "empty", text: "No cards match." }));
      next = page.next;
      more.hidden = next == null;
      more.textContent = `More (${listBox.querySelectorAll(".card-item").length} of ${page.total})`;
    }
    more.addEventListener("click", () => T.guard(() => loadCards(false)));

    async function loadTotals() {
      const answer = await T.guard(() => T.api(withQuery("/api/v1/cards/totals", filters)));
      if (!answer) return;
      const t = answer.totals;
      T.clear(totalsBox);
      totalsBox.append(
        h(
          "div",
          { class: "money-totals" },
          h("div", { class: "stat" }, h("span", { text: "At stake this cycle" }), h("strong", { id: "total-at-stake", "data-testid": "total-at-stake", text: T.money(t.at_stake) })),
          h("div", { class: "stat up" }, h("span", { text: "Under-billed" }), h("strong", { id: "total-under-billed", "data-testid": "total-under-billed", text: T.money(t.under_billed) })),
          h("div", { class: "stat down" }, h("span", { text: "Over-billed" }), h("strong", { id: "total-over-billed", "data-testid": "total-over-billed", text: T.money(t.over_billed) })),
          answer.run ? h("div", { class: "stat" }, h("span", { text: "Run" }), h("strong", { text: `#${answer.run.id} as of ${answer.run.as_of}` })) : null
        ),
        h(
          "div",
          { class: "counts" },
          T.CATEGORIES.map(([key, label]) =>
            h(
              "button",
              {
                type: "button",
                class: `count cat-${key}`,
                id: `count-${key}`,
                "data-testid": `count-${key}`,
                "data-count": (t.cards && t.cards[key]) || 0,
                onclick: () => setParam("category", query.get("category") === key ? "" : key),
              },
              h("strong", { text: (t.cards && t.cards[key]) || 0 }),
              ` ${label}`
            )
          )
        )
      );
    }

    if (group) {
      more.hidden = true;
      loadTotals();
      const q = new URLSearchParams(filters);
      q.set("by", group);
      const answer = await T.api(withQuery("/api/v1/cards/groups", q));
      const label = (key) => (group === "company" ? T.companyName(companies, key) : key == null ? "(none)" : key);
      listBox.appendChild(
        T.table(
          "group-table",
          [{ company: "Account", product: "Service", contract: "Contract" }[group] || group, "Cards", "At stake", "Under-billed", "Over-billed"],
          answer.groups.map((g) =>
            h(
              "tr",
              { "data-testid": "group", "data-key": g.key == null ? "" : g.key },
              h(
                "td",
                {},
                group === "company" && g.key != null
                  ? h("a", {
                      href: "#",
                      class: "group-open",
                      text: label(g.key),
                      onclick: (e) => {
                        e.preventDefault();
                        const next = new URLSearchParams(window.location.search);
                        next.delete("group");
                        next.set("company", g.key);
                        T.navigate(withQuery("/app/cards", next));
                      },
                    })
                  : label(g.key)
              ),
              T.td(
                Object.entries(g.totals.cards || {})
                  .map(([c, n]) => `${n} ${T.categoryLabel(c)}`)
                  .join(", ")
              ),
              T.td(T.money(g.totals.at_stake), "num"),
              T.td(T.money(g.totals.under_billed), "num"),
              T.td(T.money(g.totals.over_billed), "num")
            )
          )
        )
      );
      return;
    }
    await loadCards(true);
    T.onLeave(
      T.onEvent((name) => {
        if (name === "reconciled") T.flash("A new reconcile run is in: reload to see it.");
      })
    );
  });

  // ----------------------------------------------------------- card detail

  T.route(/^\/app\/cards\/([0-9a-fA-F]{32})$/, "cards", async (main, match) => {
    const key = match[1].toLowerCase();
    const approver = T.can("approver");
    const companies = await T.companies();
    let pollTimer = null;
    let alive = true;
    T.onLeave(() => {
      alive = false;
      clearTimeout(pollTimer);
    });
    T.onLeave(
      T.onEvent((name, data) => {
        if (name === "write_back" && data.card === key) {
          T.flash(`Write-back ${data.status}: ${data.message}`);
          load();
        }
      })
    );

    const root = h("div", { id: "card-detail", "data-key": key, "data-testid": "card-detail" });
    main.appendChild(h("p", {}, T.link(T.cardFilter ? `/app/cards?${T.cardFilter}` : "/app/cards", "← Cards", { id: "back-to-cards" })));
    main.appendChild(root);
    const planBox = h("div", { id: "plan", "data-testid": "plan" });

    async function planFor(body) {
      T.clear(planBox).appendChild(h("p", { text: "Planning…" }));
      const plan = await T.guard(() => T.api(`/api/v1/cards/${key}/plan`, { method: "POST", body }));
      T.clear(planBox);
      if (!plan) {
        planBox.appendChild(h("p", { class: "muted", text: "No plan (see the alert)." }));
        return;
      }
      const c = plan.change;
      planBox.appendChild(
        h(
          "p",
          { id: "plan-summary" },
          plan.pending ? "The pending write-back will: " : "Approving would: ",
          `set ${c.product_identifier || "line"} ${c.line_id ? `(line ${c.line_id}) ` : ""}on contract ${c.contract_id} from ${T.qty(c.expected_quantity)} to ${c.new_quantity}, effective ${c.effective_date} (${c.policy}).`
        )
      );
      planBox.appendChild(
        h(
          "ol",
          { id: "plan-calls", class: "calls" },
          plan.calls.map((call) =>
            h(
              "li",
              { "data-testid": "plan-call", "data-method": call.method },
              h("code", { class: `method m-${call.method}`, text: call.method }),
              " ",
              h("code", { class: "url", text: call.url }),
              h("div", { class: "purpose", text: call.purpose }),
              call.body ? h("pre", { class: "body", text: call.body }) : null
            )
          )
        )
      );
    }

    async function act(path, body, what) {
      let answer;
      try {
        answer = await T.api(path, { method: "POST", body });
      } catch (e) {
        T.showError(e);
        return;
      }
      if (answer && answer.refused && answer.refused.length) {
        T.showError(new Error(`Refused: ${answer.refused.map(([, why]) => why).join("; ")}`));
      } else {
        T.flash(what);
      }
      await load();
    }
    const decide = async (action, what) => {
      const body = { cards: [key], action };
      // A PSA write is confirmed first, from the server's preview of it.
      if ((action.action === "approve" || action.action === "adjust") && !(await T.confirmWrites(body))) return;
      return act("/api/v1/decisions", body, what);
    };

    // A write-back that needs review: what was sent beside what the PSA
    // stored, the connector's words, the journalled writes, and the
    // decisions (accept, retry); a pending one can be cancelled.
    function reviewPanel(w) {
      const box = h("div", { id: "write-back-review", "data-testid": "write-back-review", "data-status": w.status });
      const decideWb = (verb, what) => act(`/api/v1/outbox/${w.id}/${verb}`, {}, what);
      if (w.status === "pending") {
        box.appendChild(h("button", { type: "button", id: "write-back-cancel", text: "Cancel this write-back", onclick: () => decideWb("cancel", "Write-back cancelled") }));
        return T.section("Pending write-back", box);
      }
      T.api(`/api/v1/outbox/${w.id}/review`)
        .then((r) => {
          if (!r) return;
          const review = r.review;
          box.appendChild(h("p", { class: "reason", "data-testid": "review-reason", text: review.reason }));
          box.appendChild(
            T.table(
              "review-values",
              ["Field", "Sent", "PSA stored"],
              (review.mismatches.length
                ? review.mismatches
                : [{ field: "quantity", sent: review.sent.quantity, stored: review.stored ? review.stored.quantity : "unknown" }]
              ).map((m) => h("tr", { "data-testid": "review-mismatch", "data-field": m.field }, T.td(m.field), T.td(m.sent), T.td(m.stored)))
            )
          );
          if (review.connector_said) box.appendChild(h("p", { class: "error", text: `Connector: ${review.connector_said}` }));
          if (r.writes.length) {
            box.appendChild(
              T.table(
                "review-writes",
                ["Attempt", "Request", "Outcome", "Record", "When"],
                r.writes.map((j) => h("tr", {}, T.td(j.attempt), T.td(`${j.method} ${j.url}`), T.td(j.outcome + (j.status ? ` (${j.status})` : "")), T.td(j.record_id || "—"), T.td(T.when(j.recorded_at))))
              )
            );
          }
        })
        .catch((e) => T.showError(e));
      box.appendChild(h("button", { type: "button", id: "write-back-accept", text: "Accept what the PSA stored", onclick: () => decideWb("accept", "Accepted what the PSA stored") }));
      box.appendChild(h("button", { type: "button", id: "write-back-retry", text: "Send again", onclick: () => decideWb("retry", "Write-back queued again") }));
      return T.section("Needs review", box);
    }

    async function load() {
      if (!alive) return;
      const d = await T.guard(() => T.api(`/api/v1/cards/${key}`));
      if (!d || !alive) return;
      render(d);
      const last = d.write_backs[d.write_backs.length - 1];
      const waiting =
        (last && (last.status === "pending" || last.status === "in_flight")) ||
        (d.state && d.state.write_back && !["applied", "rejected", "none", "needs_review", "cancelled"].includes(d.state.write_back));
      clearTimeout(pollTimer);
      if (waiting) pollTimer = setTimeout(load, 1500);
    }

    function render(d) {
      const card = d.card;
      const m = card.money || {};
      const change = card.change || {};
      const effective = change.effective;
      const proration = change.proration;
      const vq = card.vendor_quantity;
      const lastWb = d.write_backs[d.write_backs.length - 1];
      T.clear(root);
      root.appendChild(
        h(
          "div",
          { class: "detail-head" },
          h("h1", { text: `${T.companyName(companies, card.company)} — ${card.product || "(no product)"}` }),
          h("span", { class: `badge cat-${card.category}`, id: "detail-category", "data-category": card.category, text: T.categoryLabel(card.category) }),
          h("span", { class: `badge status-${d.status}`, id: "detail-status", "data-testid": "card-status", "data-status": d.status, text: d.status }),
          h("span", {
            class: `badge wb-${lastWb ? lastWb.status : "none"}`,
            id: "write-back-status",
            "data-testid": "write-back-status",
            "data-status": lastWb ? lastWb.status : "none",
            text: lastWb ? `write-back ${lastWb.status}` : "no write-back",
          }),
          d.tags.map((t) => h("span", { class: "tag", text: t }))
        )
      );
      if (lastWb) root.appendChild(h("p", { id: "write-back-line", "data-testid": "write-back-line", text: writeBackLine(writeBackOf(lastWb)) }));
      const staged = d.state && d.state.staged;
      if (staged) {
        root.appendChild(
          h(
            "p",
            { id: "detail-staged", "data-testid": "detail-staged", "data-date": staged.effective_date || "" },
            `Staged by ${staged.by}: `,
            staged.quantity != null ? `quantity ${staged.quantity} ` : "",
            staged.effective_date ? `from ${staged.effective_date}` : "",
            ". Nothing is written to the PSA until approval, which uses it."
          )
        );
      }
      root.appendChild(
        h(
          "p",
          { class: "muted" },
          `Run #${d.run.id} as of ${d.run.as_of} · contract ${card.contract || "—"} · line ${card.line || "—"} · vendors ${card.vendors.join(", ") || "—"} · period ${card.period ? `${card.period.start} – ${card.period.end}` : "—"}`
        )
      );
      if (card.error) root.appendChild(h("p", { class: "error", text: `Rule error: ${text(card.error)}` }));

      const grid = h("div", { class: "grid" });
      root.appendChild(grid);
      grid.appendChild(
        T.section(
          "Quantities",
          h(
            "dl",
            { class: "kv" },
            h("dt", { text: "PSA" }),
            h("dd", { id: "detail-psa-qty", text: psaQuantity(card) }),
            h("dt", { text: "Vendor (billable)" }),
            h("dd", { id: "detail-vendor-qty", text: vq ? T.qty(vq.billable) : "—" }),
            vq && vq.measured ? [h("dt", { text: "Measured" }), h("dd", { text: `${vq.measured.quantity} (${vq.measured.from} – ${vq.measured.to})` })] : null,
            h("dt", { text: "Proposed" }),
            h("dd", { id: "detail-target-qty", text: T.qty(card.target_quantity) }),
            h("dt", { text: "Variance" }),
            h("dd", { text: T.qty(card.variance) }),
            d.policy ? [h("dt", { text: "Policy" }), h("dd", { text: d.policy })] : null
          )
        )
      );
      const moneyRow = (label, part) => h("tr", {}, h("th", { text: label }), T.td(T.money(part && part.price), "num"), T.td(T.money(part && part.cost), "num"), T.td(T.money(part && part.margin), "num"));
      grid.appendChild(
        T.section(
          "Cost, price, margin",
          h("p", {}, `Unit price ${T.money(m.unit_price)} · unit cost ${T.money(m.unit_cost)}`),
          h(
            "table",
            { id: "money" },
            h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: "Price" }), h("th", { text: "Cost" }), h("th", { text: "Margin" }))),
            h("tbody", {}, moneyRow("Before", m.before), moneyRow("After", m.after))
          ),
          h("p", { id: "money-delta" }, "Change per period: ", h("strong", { text: T.signedMoney(m.delta) }))
        )
      );
      grid.appendChild(
        T.section(
          "Effective date and proration",
          effective
            ? h("p", { id: "effective" }, "Effective ", h("strong", { id: "effective-date", text: effective.date }), ` — ${effective.reason}`, effective.shifted_from ? ` (shifted from ${effective.shifted_from})` : "")
            : h("p", { class: "muted", text: "No change proposed." }),
          proration
            ? h(
                "p",
                { id: "proration" },
                `${proration.explanation}. Next invoice ${T.signedMoney(proration.next_invoice_delta)} (${proration.days_charged} of ${proration.days_in_period} days${proration.prorated ? ", prorated" : ""}); full period ${T.signedMoney(proration.full_period_delta)}.`
              )
            : null,
          effective && effective.notes && effective.notes.length ? h("ul", {}, effective.notes.map((n) => h("li", { text: text(n) }))) : null
        )
      );

      // Actions.
      if (approver) {
        const qty = h("input", { id: "adjust-quantity", type: "text", inputmode: "decimal", placeholder: card.target_quantity || "quantity", "aria-label": "Quantity" });
        const date = h("input", { id: "adjust-date", type: "date", value: effective ? effective.date : "", "aria-label": "Effective date" });
        const snooze = h("input", { id: "snooze-date", type: "date", "aria-label": "Snooze until" });
        const reason = h("input", { id: "exclude-reason", type: "text", placeholder: "Why exclude", "aria-label": "Exclude reason" });
        const tag = h("input", { id: "tag-name", type: "text", placeholder: "tag", "aria-label": "Tag" });
        const note = h("textarea", { id: "note-text", rows: 2, placeholder: "Add a note", "aria-label": "Note" });
        const adjustBody = () => {
          const body = {};
          if (qty.value.trim()) body.quantity = qty.value.trim();
          if (date.value && (!effective || date.value !== effective.date || body.quantity)) body.effective_date = date.value;
          return body;
        };
        grid.appendChild(
          T.section(
            "Actions",
            h(
              "div",
              { class: "actions" },
              // A decided card is reopened before it is decided again (the
              // server refuses a second decision), so only open cards offer these.
              d.status === "open" ? h("button", { type: "button", id: "action-approve", class: "primary", "data-testid": "approve", text: "Approve", onclick: () => decide({ action: "approve" }, "Approved") }) : null,
              d.status === "open" ? h("button", { type: "button", id: "action-dismiss", text: "Dismiss this cycle", onclick: () => decide({ action: "dismiss" }, "Dismissed") }) : null,
              d.status !== "open" ? h("button", { type: "button", id: "action-reopen", text: "Reopen", onclick: () => act("/api/v1/cards/reopen", { cards: [key] }, "Reopened") }) : null
            ),
            h(
              "div",
              { class: "row" },
              T.field("Quantity", qty),
              T.field("Effective date", date),
              h("button", {
                type: "button",
                id: "plan-adjust",
                text: "Preview",
                onclick: () => planFor(adjustBody()),
              }),
              h("button", {
                type: "button",
                id: "action-adjust",
                text: "Adjust",
                onclick: () => {
                  const body = adjustBody();
                  if (!body.quantity && !body.effective_date) return T.showError(new Error("Give a quantity or a different date."));
                  return decide(Object.assign({ action: "adjust" }, body), "Adjusted");
                },
              })
            ),
            h(
              "div",
              { class: "row" },
              T.field("Snooze until (empty: until the numbers change)", snooze),
              h("button", {
                type: "button",
                id: "action-snooze",
                text: "Snooze",
                onclick: () => decide({ action: "snooze", until: snooze.value ? { date: snooze.value } : "numbers_change" }, "Snoozed"),
              })
            ),
            h(
              "div",
              { class: "row" },
              T.field("Reason", reason),
              h("button", { type: "button", id: "action-exclude", text: "Exclude", onclick: () => decide({ action: "exclude", reason: reason.value || "excluded" }, "Excluded") })
            ),
            h(
              "div",
              { class: "row" },
              T.field("Tag", tag),
              h("button", {
                type: "button",
                id: "action-tag",
                text: "Add tag",
                onclick: () => (tag.value ? act("/api/v1/tags", { cards: [key], tag: tag.value }, `Tagged ${tag.value}`) : null),
              }),
              d.tags.map((t) =>
                h("button", { type: "button", class: "untag", "data-tag": t, text: `− ${t}`, onclick: () => act("/api/v1/tags/remove", { cards: [key], tag: t }, `Removed ${t}`) })
              )
            ),
            h(
              "div",
              { class: "row" },
              T.field("Note", note),
              h("button", {
                type: "button",
                id: "action-note",
                text: "Add note",
                onclick: () => (note.value.trim() ? act(`/api/v1/cards/${key}/notes`, { text: note.value.trim() }, "Note added") : null),
              })
            )
          )
        );
        const planSection = T.section(
          "Dry run: the exact PSA calls",
          h("button", { type: "button", id: "plan-refresh", text: "Plan", onclick: () => planFor({}) }),
          planBox
        );
        grid.appendChild(planSection);
      }

      // Write-backs.
      root.appendChild(
        T.section(
          "Write-back",
          d.write_backs.length
            ? T.table(
                "write-backs",
                ["#", "Status", "Attempts", "Change", "PSA record ids", "PSA's answer", "Updated"],
                d.write_backs.map((w) =>
                  h(
                    "tr",
                    { "data-testid": "write-back", "data-status": w.status },
                    T.td(w.id),
                    h("td", {}, h("span", { class: `badge wb-${w.status}`, text: w.status })),
                    T.td(w.attempts, "num"),
                    T.td(w.change ? `${T.qty(w.change.expected_quantity)} → ${w.change.new_quantity} from ${w.change.effective_date}` : "—"),
                    T.td(w.result && w.result.record_ids ? w.result.record_ids.join(", ") : "—", "record-ids"),
                    T.td(w.error ? text(w.error) : w.result && w.result.line ? `line ${w.result.line.id}: ${w.result.line.quantity} from ${w.result.line.effective_date}` : "—", w.error ? "error" : ""),
                    T.td(T.when(w.finished_at || w.updated_at))
                  )
                )
              )
            : h("p", { class: "muted", id: "no-write-backs", text: "Nothing written back for this card." })
        )
      );
      if (lastWb && approver && (lastWb.status === "needs_review" || lastWb.status === "pending")) {
        root.appendChild(reviewPanel(lastWb));
      }
      if (planBox.childNodes.length === 0 && approver && (card.category === "reconcile" || card.category === "new_revenue")) planFor({});

      // Rule trace.
      root.appendChild(
        T.section(
          "Rule trace",
          d.trace.length
            ? h(
                "div",
                { id: "trace" },
                d.trace.map((t) =>
                  h("div", { class: "trace" }, h("strong", { text: t.maps_to }), t.ignored ? h("span", { class: "muted", text: ` ignored: ${t.ignored}` }) : null, h("ol", {}, t.steps.map((s) => h("li", { text: s }))))
                )
              )
            : h("p", { class: "muted", text: "No rules applied." })
        )
      );
      // Usage rows.
      const u = d.usage;
      root.appendChild(
        T.section(
          `Usage rows (${u.total})`,
          u.available
            ? T.table(
                "usage-rows",
                ["Vendor", "Account", "SKU", "Name", "Quantity", "Unit", "Term", "Observed"],
                u.rows.map((r) => h("tr", {}, T.td(r.vendor), T.td(r.account), T.td(r.sku_id), T.td(r.sku_name), T.td(r.quantity, "num"), T.td(r.unit), T.td(r.billing_term), T.td(T.when(r.observed_at))))
              )
            : h("p", { class: "muted", text: u.reason })
        )
      );
      // Decisions and notes.
      root.appendChild(
        T.section(
          "Decisions and notes",
          d.decisions.length
            ? T.table(
                "decisions",
                ["When", "Who", "Action", "Resolution"],
                d.decisions.map((x) => h("tr", {}, T.td(T.when(x.decided_at)), T.td(x.actor), T.td(text(x.action)), T.td(x.resolution ? x.resolution.resolution : "—")))
              )
            : h("p", { class: "muted", text: "No decisions yet." }),
          h(
            "ul",
            { id: "notes" },
            d.notes.map((n) => h("li", {}, h("strong", { text: n.written_by }), ` ${T.when(n.written_at)}: `, n.text))
          )
        )
      );
      const historyBox = h("div", { id: "card-history" });
      root.appendChild(T.section("This card month over month", historyBox));
      T.api(`/api/v1/cards/${key}/history`)
        .then((rows) => {
          historyBox.appendChild(
            T.table(
              "card-history-table",
              ["Run", "As of", "Category", "PSA", "Vendor", "Proposed", "Money Δ"],
              rows.map((r) => h("tr", {}, T.td(r.run), T.td(r.as_of), T.td(T.categoryLabel(r.category)), T.td(T.qty(r.psa_quantity), "num"), T.td(T.qty(r.vendor_quantity), "num"), T.td(T.qty(r.target_quantity), "num"), T.td(T.signedMoney(r.money_delta), "num")))
            )
          );
        })
        .catch(T.showError);
    }

    await load();
  });
})();
