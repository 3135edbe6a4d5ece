// The courtside screen: idle shows the QR code; a new highlight of this court plays at once (muted),
// then its last seconds again at half speed, then back to idle. It keeps polling through a lost
// connection and reloads itself when the box restarted (new boot id), so nobody has to touch the TV.
"use strict";
(function () {
  const root = document.getElementById("screen");
  const video = document.getElementById("replay");
  const offline = document.getElementById("offline");
  const EVERY = 2000;
  const SLOW_SECONDS = 4;
  let seen = undefined; // the newest highlight when the page opened is not replayed
  let failures = 0;

  function idle() {
    root.dataset.state = "idle";
    video.removeAttribute("src");
    video.load();
  }

  function play(item) {
    root.dataset.state = "playing";
    root.dataset.playing = item.id;
    video.playbackRate = 1;
    video.src = item.video;
    video.play().catch(idle);
  }

  video.addEventListener("ended", function () {
    if (root.dataset.state === "playing" && video.duration > SLOW_SECONDS) {
      root.dataset.state = "slowmo";
      video.currentTime = Math.max(0, video.duration - SLOW_SECONDS);
      video.playbackRate = 0.5;
      video.play().catch(idle);
    } else {
      idle();
    }
  });
  video.addEventListener("error", function () { if (root.dataset.state !== "idle") idle(); });

  async function poll() {
    try {
      const r = await fetch(root.dataset.src, { cache: "no-store" });
      if (!r.ok) throw new Error(String(r.status));
      const body = await r.json();
      if (body.boot !== root.dataset.boot) { location.reload(); return; }
      failures = 0;
      offline.hidden = true;
      if (seen === undefined) { seen = body.id; root.dataset.ready = "1"; }
      else if (body.id && body.id !== seen) { seen = body.id; play(body); }
    } catch (e) {
      failures += 1;
      offline.hidden = failures < 3;
    }
  }
  poll();
  setInterval(poll, EVERY);
})();
