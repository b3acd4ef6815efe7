// agent-gateway console: live fragments over SSE, confirmations, shortcuts.
// No inline script anywhere (the page's CSP forbids it); this file is all.
"use strict";

// Each element with data-live="/console/live/..." is replaced by the
// fragments its SSE stream sends; focus stays on the same element id.
function startLive(el) {
  const source = new EventSource(el.dataset.live);
  source.addEventListener("update", (e) => {
    const focused = document.activeElement && el.contains(document.activeElement)
      ? document.activeElement.id : "";
    el.innerHTML = e.data;
    el.dataset.updated = String(Date.now());
    if (focused) {
      const again = document.getElementById(focused);
      if (again) again.focus();
    }
  });
  // The browser reconnects by itself; a stream the server ended for good
  // (session over) is closed so it does not retry forever.
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) el.dataset.live = "";
  });
  window.addEventListener("pagehide", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(startLive);
});

// Every action form carries data-confirm: nothing is posted unconfirmed.
document.addEventListener("submit", (e) => {
  const message = e.target.dataset ? e.target.dataset.confirm : "";
  if (message && !window.confirm(message)) e.preventDefault();
});

// Shortcuts: g t / g j / g n / g k go to topics, jobs, neurons, keys;
// "/" focuses the first filter field.
let pendingG = false;
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
  if (e.key === "/") {
    const field = document.querySelector("form.filters input, form.filters select");
    if (field) { e.preventDefault(); field.focus(); }
    return;
  }
  if (pendingG) {
    pendingG = false;
    const to = { t: "topics", j: "jobs", n: "neurons", k: "keys" }[e.key];
    if (to) window.location.assign("/console/" + to);
    return;
  }
  if (e.key === "g") pendingG = true;
});
