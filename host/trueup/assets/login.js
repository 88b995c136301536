// The login form: POST /api/v1/session, then the cards page.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.hidden = true;
  const response = await fetch("/api/v1/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({
      username: document.getElementById("username").value,
      password: document.getElementById("password").value,
    }),
  });
  if (response.ok) {
    window.location.assign("/app/cards");
    return;
  }
  const body = await response.json().catch(() => ({}));
  error.textContent = (body.error && body.error.message) || "Login failed";
  error.hidden = false;
});
