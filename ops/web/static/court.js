// The court page: refresh the list every few seconds (a press's card appears and turns into the clip
// without a reload), and the replay button when the box has it on. Its words come from the box, in the
// page's language: the press's answer carries its message, the page holds the rest.
"use strict";
(function () {
  const cards = document.getElementById("cards");
  const EVERY = 2000;
  let last = cards ? cards.innerHTML : "";
  async function refresh() {
    if (document.hidden || !cards) return;
    try {
      const r = await fetch(cards.dataset.src, { cache: "no-store" });
      if (!r.ok) return;
      const html = await r.text();
      if (html !== last) { cards.innerHTML = html; last = html; }
    } catch (e) { /* the box's Wi-Fi blinked: the next round tries again */ }
  }
  setInterval(refresh, EVERY);
  document.addEventListener("visibilitychange", refresh);

  const button = document.getElementById("press");
  const note = document.getElementById("press-note");
  if (button) {
    button.addEventListener("click", async function () {
      button.disabled = true;
      try {
        const r = await fetch(button.dataset.url, { method: "POST", headers: { "X-GN-Press": "1" } });
        const body = (r.headers.get("content-type") || "").startsWith("application/json") ? await r.json() : null;
        if (body) note.textContent = body.message;
        else note.textContent = (await r.text()).replace(/^\d+: /, "");
        refresh();
      } catch (e) {
        note.textContent = note.dataset.offline;
      }
      setTimeout(function () { button.disabled = false; }, 3000);
    });
  }
})();
