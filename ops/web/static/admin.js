// The dashboard: refresh its panel every few seconds, unless the operator is pressing a button.
"use strict";
(function () {
  const panel = document.getElementById("panel");
  const EVERY = 3000;
  let busy = false;
  panel.addEventListener("submit", function () { busy = true; });
  async function refresh() {
    if (busy || document.hidden) return;
    try {
      const r = await fetch(panel.dataset.src, { cache: "no-store" });
      if (r.status === 401) { location.href = "/admin/login"; return; }
      if (r.ok) panel.innerHTML = await r.text();
    } catch (e) { /* the box restarts or the Wi-Fi blinked: try again next round */ }
  }
  setInterval(refresh, EVERY);
})();
