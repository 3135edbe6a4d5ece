// The clip page: share with the phone's own share sheet, or copy the link where there is none (its words
// come from the page, in its language).
"use strict";
(function () {
  const share = document.getElementById("share");
  const note = document.getElementById("share-note");
  if (!share) return;
  share.addEventListener("click", async function () {
    // The clip's own address, without the page's ?lang=: whoever opens it gets their language.
    const url = location.origin + location.pathname;
    if (navigator.share) {
      try { await navigator.share({ title: share.dataset.title, url: url }); return; } catch (e) { /* cancelled */ }
    }
    try {
      await navigator.clipboard.writeText(url);
      note.textContent = share.dataset.copied;
    } catch (e) {
      window.prompt(share.dataset.prompt, url);
    }
  });
})();
