// Mapping, integrations, rules, history, users and tokens.
"use strict";
(function () {
  const T = window.Trueup;
  const h = T.h;
  const text = (v) => (v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));

  // -------------------------------------------------------------- mapping

  T.route(/^\/app\/mappings$/, "mappings", async (main, _m, query) => {
    const status = query.get("status") || "unmapped";
    const admin = T.can("admin");
    const [answer, companies, skus] = await Promise.all([
      T.api(`/api/v1/mappings/accounts${status === "all" ? "" : `?status=${encodeURIComponent(status)}`}`),
      T.companies(),
      T.api("/api/v1/mappings/skus"),
    ]);
    main.appendChild(h("h1", { text: "Mapping" }));
    main.appendChild(
      h(
        "div",
        { class: "counts", id: "mapping-counts" },
        ["unmapped", "mapped", "excluded", "all"].map((s) =>
          h(
            "a",
            {
              href: `/app/mappings?status=${s}`,
              "data-link": true,
              class: `count ${s === status ? "on" : ""} ${s === "unmapped" ? "cat-unmapped" : ""}`,
              id: `mapping-${s}`,
              "data-testid": `mapping-count-${s}`,
            },
            h("strong", { text: s === "all" ? Object.values(answer.counts).reduce((a, b) => a + b, 0) : answer.counts[s] || 0 }),
            ` ${s}`
          )
        )
      )
    );
    const options = Array.from(companies.values()).sort((a, b) => a.name.localeCompare(b.name));
    const map = async (a, company, reason) => {
      const ok = await T.guard(() =>
        T.api("/api/v1/mappings/accounts", { method: "POST", body: { vendor: a.vendor, account: a.account, company, reason } }).then(() => true)
      );
      if (ok) {
        T.flash(company ? `Mapped ${a.name || a.account} to ${T.companyName(companies, company)} (takes effect at the next reconcile)` : `Excluded ${a.name || a.account}`);
        T.refreshUnmapped();
        T.render();
      }
    };
    main.appendChild(
      T.section(
        "Vendor accounts",
        T.table(
          "accounts",
          ["Vendor", "Account", "Name", "Status", "Company", "How", "Suggestions", ""],
          answer.accounts.map((a) => {
            const pick = h("select", { class: "map-company", "aria-label": "Company" }, h("option", { value: "", text: "Map to…" }), options.map((c) => h("option", { value: c.id, text: c.name })));
            return h(
              "tr",
              { "data-testid": "account", "data-vendor": a.vendor, "data-account": a.account, "data-status": a.status },
              T.td(a.vendor),
              T.td(a.account, "mono"),
              T.td(a.name),
              h("td", {}, h("span", { class: `badge map-${a.status}`, text: a.status }), a.manual ? " (manual)" : ""),
              T.td(a.company ? T.companyName(companies, a.company) : "—"),
              h("td", { class: "reason" }, h("strong", { text: a.method ? a.method.method : "" }), h("div", { class: "muted", text: a.reason })),
              h(
                "td",
                {},
                a.suggestions.map((s) =>
                  h(
                    "div",
                    { class: "suggestion", "data-testid": "suggestion" },
                    h("span", { class: "score", text: s.score }),
                    ` ${s.company_name} `,
                    admin
                      ? h("button", {
                          type: "button",
                          class: "accept",
                          "data-company": s.company,
                          text: "Accept",
                          onclick: () => map(a, s.company, `accepted suggestion: ${s.reason}`),
                        })
                      : null,
                    h("div", { class: "muted", text: s.reason })
                  )
                )
              ),
              h(
                "td",
                { class: "needs-admin" },
                pick,
                h("button", { type: "button", class: "map", text: "Map", onclick: () => (pick.value ? map(a, pick.value, "mapped by hand") : null) }),
                a.status !== "excluded" ? h("button", { type: "button", class: "exclude", text: "Exclude", onclick: () => map(a, null, "excluded by hand") }) : null,
                a.manual
                  ? h("button", {
                      type: "button",
                      class: "unmap",
                      text: "Reset",
                      onclick: async () => {
                        const ok = await T.guard(() =>
                          T.api(`/api/v1/mappings/accounts/${encodeURIComponent(a.vendor)}/${encodeURIComponent(a.account)}`, { method: "DELETE" }).then(() => true)
                        );
                        if (ok) T.render();
                      },
                    })
                  : null
              )
            );
          })
        )
      )
    );
    // SKU table.
    const v = h("input", { id: "sku-vendor", placeholder: "vendor", "aria-label": "Vendor" });
    const s = h("input", { id: "sku-sku", placeholder: "SKU", "aria-label": "SKU" });
    const p = h("input", { id: "sku-product", placeholder: "product", "aria-label": "Product" });
    const mult = h("input", { id: "sku-multiplier", placeholder: "1", "aria-label": "Multiplier" });
    main.appendChild(
      T.section(
        "SKU table",
        h("p", { class: "muted", text: "Entries here map a vendor SKU to a PSA product before the rules' own mappings." }),
        T.table(
          "skus",
          ["Vendor", "SKU", "Product", "Multiplier", "Changed", ""],
          skus.map((x) =>
            h(
              "tr",
              {},
              T.td(x.entry.vendor),
              T.td(x.entry.sku),
              T.td(x.entry.product),
              T.td(x.entry.multiplier, "num"),
              T.td(`${x.updated_by} ${T.when(x.updated_at)}`),
              h(
                "td",
                { class: "needs-admin" },
                h("button", {
                  type: "button",
                  text: "Delete",
                  onclick: async () => {
                    const e = x.entry;
                    const ok = await T.guard(() =>
                      T.api(`/api/v1/mappings/skus/${encodeURIComponent(e.vendor)}/${encodeURIComponent(e.sku)}/${encodeURIComponent(e.product)}`, { method: "DELETE" }).then(() => true)
                    );
                    if (ok) T.render();
                  },
                })
              )
            )
          )
        ),
        h(
          "div",
          { class: "row needs-admin" },
          v,
          s,
          p,
          mult,
          h("button", {
            type: "button",
            id: "sku-save",
            text: "Set entry",
            onclick: async () => {
              const body = { vendor: v.value, sku: s.value, product: p.value };
              if (mult.value) body.multiplier = mult.value;
              const ok = await T.guard(() => T.api("/api/v1/mappings/skus", { method: "PUT", body }).then(() => true));
              if (ok) T.render();
            },
          })
        )
      )
    );
  });

  // --------------------------------------------------------- integrations

  T.route(/^\/app\/integrations$/, "integrations", async (main) => {
    main.appendChild(h("h1", { text: "Integrations" }));
    const asOf = h("input", { type: "date", id: "reconcile-as-of", "aria-label": "Reconcile as of", max: new Date().toISOString().slice(0, 10), title: "Empty: today" });
    const progress = h("ul", { id: "sync-progress", class: "progress", "data-testid": "sync-progress" });
    const syncBox = h(
      "div",
      { class: "row needs-admin" },
      h("button", { type: "button", id: "sync-quick", text: "Sync now (quick)", onclick: () => sync({ mode: "quick" }) }),
      h("button", { type: "button", id: "sync-full", class: "primary", text: "Sync now (full, then reconcile)", onclick: () => sync({ mode: "full" }) }),
      h("button", { type: "button", id: "reconcile-now", text: "Reconcile now", onclick: () => enqueue("/api/v1/reconcile", asOf.value ? { as_of: asOf.value } : {}) }),
      // Empty: today. A past date reconciles that date's periods (e.g. a month after it ended).
      T.field("as of", asOf)
    );
    main.appendChild(T.section("Sync", syncBox, progress));
    const line = (textValue, cls) => {
      progress.insertBefore(h("li", { class: cls || "", text: `${new Date().toLocaleTimeString()} ${textValue}` }), progress.firstChild);
      while (progress.childNodes.length > 40) progress.removeChild(progress.lastChild);
    };
    async function enqueue(path, body) {
      const answer = await T.guard(() => T.api(path, { method: "POST", body }));
      if (answer && answer.job) line(`job #${answer.job.id} ${answer.job.kind} ${answer.job.status}`);
    }
    const sync = (body) => enqueue("/api/v1/syncs", body);
    T.onLeave(
      T.onEvent((name, d) => {
        if (name === "sync_progress") line(`${d.source}: ${d.phase} — ${d.records} records, ${d.pages} pages`);
        else if (name === "sync_finished") line(`${d.source}: ${d.ok ? "done" : "FAILED"} — ${d.message}`, d.ok ? "ok" : "error");
        else if (name === "job_finished") {
          line(`job #${d.job} ${d.kind}: ${d.ok ? "finished" : "failed"} — ${d.message}`, d.ok ? "ok" : "error");
          loadHealth();
        } else if (name === "reconciled") line(`reconciled: run #${d.run}, ${d.cards} cards`, "ok");
      })
    );
    const healthBox = h("div", { id: "sync-health" });
    main.appendChild(T.section("Sync health", healthBox));
    async function loadHealth() {
      const health = await T.guard(() => T.api("/api/v1/sync/health"));
      if (!health) return;
      T.clear(healthBox).appendChild(healthTable(health));
    }
    function healthTable(health) {
      return T.table(
        "",
        ["Source", "Kind", "Last run", "Status", "Records", "Requests", "Wall ms", "Last success", "Error"],
        health.map((x) => {
          const r = x.last_run || {};
          const st = r.stats || {};
          return h(
            "tr",
            { "data-testid": "health", "data-source": x.source, "data-status": r.status || "" },
            T.td(x.source),
            T.td(x.kind),
            T.td(T.when(r.finished_at || r.started_at)),
            h("td", {}, h("span", { class: `badge run-${r.status}`, text: r.status || "never" })),
            T.td(st.records, "num"),
            T.td(st.requests, "num"),
            T.td(st.wall_ms, "num"),
            T.td(x.last_success ? T.when(x.last_success.finished_at) : "never"),
            T.td(r.error || "", "error")
          );
        })
      );
    }
    await loadHealth();

    const plugins = await T.api("/api/v1/integrations");
    for (const p of plugins) {
      const m = p.manifest || {};
      const secrets = p.secrets.map((sec) => {
        const input = h("input", { type: "password", autocomplete: "new-password", placeholder: sec.set ? "•••••• (set; type to replace)" : "not set", "aria-label": `Secret ${sec.name}`, class: "secret-input" });
        return h(
          "tr",
          { "data-testid": "secret", "data-name": sec.name, "data-set": sec.set ? "true" : "false" },
          T.td(sec.name, "mono"),
          T.td(sec.granted ? "granted" : "NOT granted"),
          T.td(sec.set ? `set by ${sec.updated_by || "?"} ${T.when(sec.updated_at)}` : "not set"),
          h(
            "td",
            {},
            input,
            h("button", {
              type: "button",
              class: "secret-save",
              text: "Set",
              onclick: async () => {
                if (!input.value) return;
                const ok = await T.guard(() =>
                  T.api(`/api/v1/integrations/${encodeURIComponent(p.id)}/secrets/${encodeURIComponent(sec.name)}`, { method: "PUT", body: { value: input.value } }).then(() => true)
                );
                input.value = "";
                if (ok) {
                  T.flash(`Secret ${sec.name} of ${p.id} set`);
                  T.render();
                }
              },
            })
          )
        );
      });
      main.appendChild(
        h(
          "section",
          { class: "panel plugin", "data-testid": "integration", "data-plugin": p.id },
          h("h2", {}, `${m.name || p.id} `, h("span", { class: "muted", text: `${p.id} ${m.version || ""} · ${m.kind || ""} · used as ${p.used_as.join(", ") || "—"}` }), p.enabled ? "" : h("span", { class: "badge", text: "disabled" })),
          p.manifest_error ? h("p", { class: "error", text: `Manifest: ${p.manifest_error}` }) : null,
          m.description ? h("p", { text: m.description }) : null,
          h(
            "div",
            { class: "grid" },
            h(
              "div",
              {},
              h("h3", { text: "Capabilities" }),
              h(
                "dl",
                { class: "kv" },
                h("dt", { text: "Declared hosts" }),
                h("dd", { text: ((p.declared && p.declared.http) || []).join(", ") || "—" }),
                h("dt", { text: "Granted hosts" }),
                h("dd", { text: (p.granted.http || []).join(", ") || "—" }),
                h("dt", { text: "Private networks" }),
                h("dd", { text: (p.granted.private_networks || []).join(", ") || "—" }),
                h("dt", { text: "Granted secrets" }),
                h("dd", { text: (p.granted.secrets || []).join(", ") || "—" }),
                m.limits ? [h("dt", { text: "Limits" }), h("dd", { text: text(m.limits) })] : null
              )
            ),
            h(
              "div",
              {},
              h("h3", { text: "Config" }),
              T.table(
                "",
                ["Setting", "Value", "About"],
                Object.entries(p.config).map(([k, val]) => h("tr", {}, T.td(k, "mono"), T.td(val, "mono"), T.td(m.config && m.config[k] ? m.config[k].description : "")))
              )
            )
          ),
          h("h3", { text: "Secrets (write-only)" }),
          p.secrets.length ? T.table("", ["Name", "Grant", "State", "Set a new value"], secrets) : h("p", { class: "muted", text: "No secrets." }),
          p.health.length ? [h("h3", { text: "Sync health" }), healthTable(p.health)] : null
        )
      );
    }
    const jobs = await T.api("/api/v1/jobs?limit=20").catch(() => []);
    main.appendChild(
      T.section(
        "Recent jobs",
        T.table(
          "jobs",
          ["#", "Kind", "Status", "Attempts", "Created", "Finished", "Error"],
          jobs.map((j) => h("tr", {}, T.td(j.id), T.td(j.kind), T.td(j.status), T.td(j.attempts, "num"), T.td(T.when(j.created_at)), T.td(T.when(j.finished_at)), T.td(j.error || "", "error")))
        )
      )
    );
  });

  // ----------------------------------------------------------------- rules

  T.route(/^\/app\/rules$/, "rules", async (main) => {
    const rules = await T.api("/api/v1/rules");
    const admin = T.can("admin");
    const active = rules.active;
    main.appendChild(h("h1", { text: "Rules" }));
    main.appendChild(
      h(
        "p",
        { id: "rules-active" },
        active ? `Active: ${active.file} · ${active.checksum.slice(0, 12)} · by ${active.activated_by} ${T.when(active.activated_at)}` : "No active rules."
      )
    );
    const source = h("textarea", { id: "rules-source", class: "code", rows: 24, spellcheck: "false", readonly: !admin, value: active ? active.source : "" });
    const tests = h("textarea", { id: "rules-tests", class: "code", rows: 6, spellcheck: "false", readonly: !admin, placeholder: "Test cases (TOML), optional", value: (active && active.tests) || "" });
    const out = h("div", { id: "rules-result", "data-testid": "rules-result" });
    const draft = () => {
      const body = { source: source.value };
      if (tests.value.trim()) body.tests = tests.value;
      if (active) body.file = active.file;
      return body;
    };
    const run = async (path, show) => {
      T.clear(out).appendChild(h("p", { text: "Working…" }));
      const answer = await T.guard(() => T.api(path, { method: "POST", body: draft() }));
      T.clear(out);
      if (answer) show(answer);
    };
    const totalsLine = (t) => `${T.money(t.at_stake)} at stake, ${T.money(t.under_billed)} under, ${T.money(t.over_billed)} over; ${Object.entries(t.cards || {}).map(([c, n]) => `${n} ${c}`).join(", ")}`;
    main.appendChild(
      T.section(
        admin ? "Edit a draft" : "Source",
        source,
        tests,
        admin
          ? h(
              "div",
              { class: "row" },
              h("button", {
                type: "button",
                id: "rules-check",
                text: "Check",
                onclick: () =>
                  run("/api/v1/rules/check", (a) =>
                    out.appendChild(
                      h(
                        "div",
                        { class: "ok" },
                        h("p", { text: `OK: version ${a.version.slice(0, 12)}, ${a.rules} rules, ${a.services} services, vendors ${a.vendors.join(", ")}` }),
                        a.warnings.length ? h("ul", { class: "warnings" }, a.warnings.map((w) => h("li", { text: w }))) : null,
                        a.printed.length ? h("pre", { text: a.printed.join("\n") }) : null,
                        a.tests ? h("pre", { class: a.tests.passed ? "" : "error", text: `${a.tests.cases} cases, ${a.tests.failed} failed\n${a.tests.report}` }) : null
                      )
                    )
                  ),
              }),
              h("button", {
                type: "button",
                id: "rules-dry-run",
                text: "Dry-run diff",
                onclick: () =>
                  run("/api/v1/rules/dry-run", (a) => {
                    const diff = a.diff;
                    const summary = (c) => `${c.subject} — ${c.fields.map(([k, v]) => `${k}: ${v}`).join("; ")}`;
                    out.appendChild(
                      h(
                        "div",
                        {},
                        h("p", { text: `As of ${a.as_of}: ${diff.added.length} added, ${diff.removed.length} removed, ${diff.changed.length} changed, ${diff.unchanged} unchanged.` }),
                        h("p", { text: `Before: ${totalsLine(a.before)}` }),
                        h("p", { text: `After: ${totalsLine(a.after)}` }),
                        h("ul", { class: "diff" }, diff.added.map((c) => h("li", { class: "added", text: `+ ${summary(c)}` })), diff.removed.map((c) => h("li", { class: "removed", text: `− ${summary(c)}` })), diff.changed.map((c) => h("li", { class: "changed" }, `~ ${c.card.subject}: `, c.changes.map((f) => `${f.field} ${f.before} → ${f.after}`).join("; "))))
                      )
                    );
                  }),
              }),
              h("button", {
                type: "button",
                id: "rules-activate",
                class: "primary",
                text: "Activate",
                onclick: () =>
                  run("/api/v1/rules/activate", (a) => {
                    T.flash(`Activated ${a.checksum.slice(0, 12)}; the next reconcile uses it`);
                    T.render();
                  }),
              })
            )
          : null,
        out
      )
    );
    main.appendChild(
      T.section(
        "Versions",
        T.table(
          "rule-versions",
          ["Checksum", "Author", "Created", "Active", ""],
          rules.versions.map((v) =>
            h(
              "tr",
              {},
              T.td(v.checksum.slice(0, 16), "mono"),
              T.td(v.author),
              T.td(T.when(v.created_at)),
              T.td(v.active ? "active" : ""),
              h(
                "td",
                {},
                h("button", {
                  type: "button",
                  text: "Load into editor",
                  onclick: async () => {
                    const version = await T.guard(() => T.api(`/api/v1/rules/versions/${v.checksum}`));
                    if (version) {
                      source.value = version.source || "";
                      tests.value = version.tests || "";
                    }
                  },
                })
              )
            )
          )
        )
      )
    );
  });

  // ------------------------------------------------ runs and exclusions

  T.route(/^\/app\/runs$/, "runs", async (main) => {
    main.appendChild(h("h1", { text: "Reconcile runs" }));
    const runs = await T.api("/api/v1/runs?limit=100");
    if (runs.length === 0) {
      main.appendChild(h("p", { class: "empty", text: "No reconcile has run yet: sync and reconcile from Integrations." }));
      return;
    }
    main.appendChild(
      T.table(
        "runs",
        ["Run", "As of", "Finished", "Cards", "Usage rows", "Left out or noted"],
        runs.map((r) =>
          h(
            "tr",
            { "data-testid": "run", "data-run": r.id },
            T.td(`#${r.id}`),
            T.td(r.as_of),
            T.td(T.when(r.finished_at)),
            T.td(r.card_count, "num"),
            T.td((r.stats || {}).usage_rows, "num"),
            h("td", {}, h("a", { href: `/app/runs/${r.id}/exclusions`, "data-link": true, id: `exclusions-${r.id}`, text: "Exclusions" }))
          )
        )
      )
    );
  });

  // Why is this customer missing? Everything a run left out, by reason.
  T.route(/^\/app\/runs\/(\d+)\/exclusions$/, "runs", async (main, match, query) => {
    const run = match[1];
    const reason = query.get("reason") || "";
    const after = query.get("after") || "";
    const params = new URLSearchParams({ limit: "200" });
    if (reason) params.set("reason", reason);
    if (after) params.set("after", after);
    const page = await T.api(`/api/v1/runs/${run}/exclusions?${params}`);
    main.appendChild(h("h1", { text: `Run #${run}: left out or noted` }));
    main.appendChild(h("p", {}, h("a", { href: "/app/runs", "data-link": true, text: "← All runs" })));
    const all = page.counts.reduce((n, c) => n + c.count, 0);
    const link = (code, label) =>
      h("a", { href: `/app/runs/${run}/exclusions${code ? `?reason=${code}` : ""}`, "data-link": true, "data-reason": code, class: code === reason ? "badge active" : "badge", text: label });
    main.appendChild(
      h(
        "nav",
        { class: "row", id: "exclusion-reasons", "aria-label": "Reasons" },
        link("", `All (${all})`),
        page.counts.map((c) => link(c.code, `${c.code.replace(/_/g, " ")} (${c.count})`))
      )
    );
    if (page.exclusions.length === 0) {
      main.appendChild(h("p", { class: "empty", text: "Nothing was left out of this run." }));
      return;
    }
    const subject = (s) => (s.kind === "account" ? `${s.kind} ${s.id.vendor}/${s.id.account}` : `${s.kind} ${s.id}`);
    main.appendChild(
      T.table(
        "exclusions",
        ["Reason", "Company", "Subject", "Name", "Source", "Why"],
        page.exclusions.map((e) =>
          h(
            "tr",
            { "data-testid": "exclusion", "data-reason": e.code, class: e.severity },
            T.td(e.code.replace(/_/g, " ")),
            T.td(e.company ? e.company.name : "—"),
            T.td(subject(e.subject)),
            T.td(e.name || "—"),
            T.td(e.source || "—"),
            T.td(e.reason)
          )
        )
      )
    );
    main.appendChild(h("p", { text: `${page.exclusions.length} of ${page.total}` }));
    if (page.next != null) {
      const next = new URLSearchParams({ after: String(page.next) });
      if (reason) next.set("reason", reason);
      main.appendChild(h("a", { href: `/app/runs/${run}/exclusions?${next}`, "data-link": true, id: "exclusions-next", class: "button", text: "Next page" }));
    }
  });

  // --------------------------------------------------------------- history

  T.route(/^\/app\/history$/, "history", async (main, _m, query) => {
    const companies = await T.companies();
    main.appendChild(h("h1", { text: "History" }));
    const exportHref = T.cardFilter ? `/api/v1/cards/export.csv?${T.cardFilter}` : "/api/v1/cards/export.csv";
    main.appendChild(h("p", {}, h("a", { id: "history-export", class: "button", href: exportHref, text: "Export the cards (current filter) as CSV" })));
    const company = h(
      "select",
      { id: "history-company", "aria-label": "Company" },
      h("option", { value: "", text: "Pick an account…" }),
      Array.from(companies.values())
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((c) => h("option", { value: c.id, text: c.name, selected: query.get("company") === c.id }))
    );
    const lineInput = h("input", { id: "history-line", placeholder: "PSA line id", value: query.get("line") || "", "aria-label": "PSA line" });
    const ledger = h("div", { id: "ledger" });
    main.appendChild(
      T.section(
        "Ledger",
        h(
          "div",
          { class: "row" },
          T.field("Account", company),
          T.field("or line", lineInput),
          h("button", {
            type: "button",
            id: "history-show",
            text: "Show",
            onclick: () => {
              const q = new URLSearchParams();
              if (lineInput.value) q.set("line", lineInput.value);
              else if (company.value) q.set("company", company.value);
              T.navigate(`/app/history?${q}`);
            },
          })
        ),
        ledger
      )
    );
    const path = query.get("line")
      ? `/api/v1/history/lines/${encodeURIComponent(query.get("line"))}`
      : query.get("company")
        ? `/api/v1/history/companies/${encodeURIComponent(query.get("company"))}`
        : null;
    if (path) {
      const rows = await T.api(path);
      ledger.appendChild(
        T.table(
          "ledger-table",
          ["Month", "Line", "Product", "PSA", "PSA as of", "Vendor", "Proposed", "Category", "Decisions", ""],
          rows.map((r) =>
            h(
              "tr",
              {},
              T.td(r.month),
              h("td", {}, r.line ? h("a", { href: `/app/history?line=${encodeURIComponent(r.line)}`, "data-link": true, text: r.line }) : "—"),
              T.td(r.product),
              T.td(T.qty(r.psa_quantity), "num"),
              T.td(r.psa_as_of),
              T.td(T.qty(r.vendor_quantity), "num"),
              T.td(T.qty(r.target_quantity), "num"),
              T.td(r.category ? T.categoryLabel(r.category) : "—"),
              T.td((r.decisions || []).map((d) => (d.action ? d.action.action || text(d.action) : text(d))).join(", ")),
              h("td", {}, r.card_key ? T.link(`/app/cards/${r.card_key}`, "card") : "")
            )
          )
        )
      );
      if (!rows.length) ledger.appendChild(h("p", { class: "muted", text: "Nothing recorded." }));
    }
    const audit = await T.api("/api/v1/audit?limit=100");
    main.appendChild(
      T.section(
        "Audit log",
        T.table(
          "audit",
          ["When", "Who", "Action", "Subject", "Details"],
          audit.map((a) => h("tr", { "data-testid": "audit", "data-action": a.action }, T.td(T.when(a.at)), T.td(a.actor), T.td(a.action), T.td(a.subject, "mono"), T.td(a.details && Object.keys(a.details).length ? JSON.stringify(a.details) : "")))
        )
      )
    );
  });

  // ------------------------------------------------------- users and tokens

  T.route(/^\/app\/users$/, "users", async (main) => {
    const [users, tokens] = await Promise.all([T.api("/api/v1/users"), T.api("/api/v1/tokens")]);
    main.appendChild(h("h1", { text: "Users & tokens" }));
    const shown = h("div", { id: "shown-once", class: "shown-once", hidden: true });
    main.appendChild(shown);
    const showOnce = (label, value) => {
      T.clear(shown).appendChild(h("p", {}, `${label} (shown once; copy it now): `, h("code", { id: "shown-value", text: value })));
      shown.hidden = false;
    };
    const roleSelect = (id, value) => h("select", { id, "aria-label": "Role" }, ["viewer", "approver", "admin"].map((r) => h("option", { value: r, text: r, selected: r === value })));
    const patch = async (u, body, what) => {
      const ok = await T.guard(() => T.api(`/api/v1/users/${encodeURIComponent(u.username)}`, { method: "PATCH", body }).then(() => true));
      if (ok) {
        T.flash(what);
        T.render();
      }
    };
    const newName = h("input", { id: "user-name", placeholder: "username", "aria-label": "Username" });
    const newRole = roleSelect("user-role", "viewer");
    main.appendChild(
      T.section(
        "Users",
        T.table(
          "users",
          ["User", "Role", "Disabled", "Created", ""],
          users.map((u) => {
            const role = roleSelect("", u.role);
            return h(
              "tr",
              { "data-testid": "user", "data-username": u.username },
              T.td(u.username),
              h("td", {}, role, h("button", { type: "button", text: "Set role", onclick: () => patch(u, { role: role.value }, `${u.username} is now ${role.value}`) })),
              T.td(u.disabled ? "disabled" : ""),
              T.td(T.when(u.created_at)),
              h(
                "td",
                {},
                h("button", { type: "button", text: u.disabled ? "Enable" : "Disable", onclick: () => patch(u, { disabled: !u.disabled }, `${u.username} ${u.disabled ? "enabled" : "disabled"}`) })
              )
            );
          })
        ),
        h(
          "div",
          { class: "row" },
          newName,
          newRole,
          h("button", {
            type: "button",
            id: "user-create",
            text: "Create user",
            onclick: async () => {
              const answer = await T.guard(() => T.api("/api/v1/users", { method: "POST", body: { username: newName.value, role: newRole.value } }));
              if (answer) {
                await T.render();
                if (answer.password) showOnce(`Password of ${answer.user.username}`, answer.password);
              }
            },
          })
        )
      )
    );
    const tokenName = h("input", { id: "token-name", placeholder: "token name", "aria-label": "Token name" });
    const tokenRole = roleSelect("token-role", "viewer");
    main.appendChild(
      T.section(
        "API tokens",
        T.table(
          "tokens",
          ["#", "Name", "Role", "Created by", "Created", "Last used", "Revoked", ""],
          tokens.map((t) =>
            h(
              "tr",
              { "data-testid": "token" },
              T.td(t.id),
              T.td(t.name),
              T.td(t.role),
              T.td(t.created_by),
              T.td(T.when(t.created_at)),
              T.td(T.when(t.last_used_at)),
              T.td(t.revoked_at ? T.when(t.revoked_at) : ""),
              h(
                "td",
                {},
                t.revoked_at
                  ? ""
                  : h("button", {
                      type: "button",
                      text: "Revoke",
                      onclick: async () => {
                        const ok = await T.guard(() => T.api(`/api/v1/tokens/${t.id}`, { method: "DELETE" }).then(() => true));
                        if (ok) T.render();
                      },
                    })
              )
            )
          )
        ),
        h(
          "div",
          { class: "row" },
          tokenName,
          tokenRole,
          h("button", {
            type: "button",
            id: "token-create",
            text: "Create token",
            onclick: async () => {
              const answer = await T.guard(() => T.api("/api/v1/tokens", { method: "POST", body: { name: tokenName.value, role: tokenRole.value } }));
              if (answer) {
                await T.render();
                showOnce(`Token ${answer.token.name}`, answer.value);
              }
            },
          })
        )
      )
    );
  });
})();
