// Boots the UI: who is logged in (and the CSRF token), role-gated parts,
// the unmapped count in the nav, live events, then the page the URL names.
"use strict";
(function () {
  const T = window.Trueup;

  T.refreshUnmapped = async function refreshUnmapped() {
    const badge = document.getElementById("nav-unmapped");
    const answer = await T.api("/api/v1/mappings/accounts?status=unmapped").catch(() => null);
    if (!answer) return;
    const n = answer.counts.unmapped || 0;
    badge.textContent = `${n} unmapped`;
    badge.dataset.count = String(n);
    badge.hidden = false;
    badge.classList.toggle("zero", n === 0);
  };

  async function start() {
    document.getElementById("alert-close").addEventListener("click", T.clearError);
    document.getElementById("logout").addEventListener("click", async () => {
      await T.api("/api/v1/session", { method: "DELETE" }).catch(() => null);
      window.location.assign("/login");
    });
    try {
      T.me = await T.api("/api/v1/session");
    } catch (e) {
      T.showError(e);
      return;
    }
    T.csrf = T.me.csrf_token || "";
    document.getElementById("who").textContent = `${T.me.username} (${T.me.role})`;
    document.body.classList.remove("loading");
    document.body.classList.add(`role-${T.me.role}`);
    document.body.dataset.role = T.me.role;
    T.refreshUnmapped();
    T.startEvents();
    T.onEvent((name) => {
      if (name === "reconciled") T.refreshUnmapped();
    });
    if (window.location.pathname === "/app" || window.location.pathname === "/app/") {
      history.replaceState(null, "", "/app/cards");
    }
    await T.render();
    document.body.dataset.ready = "true";
  }

  start();
})();
