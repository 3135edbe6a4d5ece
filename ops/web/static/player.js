// The clip page: share with the phone's own share sheet, or copy the link where there is none.
"use strict";
(function () {
  const share = document.getElementById("share");
  const note = document.getElementById("share-note");
  if (!share) return;
  share.addEventListener("click", async function () {
    const url = location.href;
    if (navigator.share) {
      try { await navigator.share({ title: share.dataset.title, url: url }); return; } catch (e) { /* cancelled */ }
    }
    try {
      await navigator.clipboard.writeText(url);
      note.textContent = "Link copied.";
    } catch (e) {
      window.prompt("Copy this link:", url);
    }
  });
})();
