"""The operator's dashboard (`/admin`, after the login): the box's status, camera pictures, a press button
per camera, and the failed jobs to requeue or purge.

What it shows is `gravanois status`'s snapshot (ops/snapshot.py); what it does to failed jobs is
ops/jobs.py, the same operations as `gravanois failed`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from common.log import event, get_logger
from ops import jobs
from ops.web.auth import Auth
from ops.web.i18n import N_
from ops.web.site import Site
from ops.web.snapshots import Snapshots
from trigger.press import Result

log = get_logger(__name__)

# Highlights listed on the dashboard.
ADMIN_HIGHLIGHTS = 15
# What the dashboard says after an action (the redirect names one of these keys).
NOTES = {
    Result.SCHEDULED: N_("pressed; the highlight is on its way."),
    Result.COOLDOWN: N_("not pressed: within the camera's cooldown."),
    Result.CLOSED: N_("not pressed: outside the opening hours (GN_OPEN_HOURS)."),
    Result.JOURNALLED: N_("pressed while Redis is down: saved in the journal, the listener enqueues it."),
    Result.DUPLICATE: N_("this press is already queued."),
    Result.REFUSED: N_("not pressed: the camera is not recording (see Cameras)."),
    Result.NOT_SAVED: N_("not pressed: Redis is down and the journal cannot be written (disk full?)."),
    "requeued": N_("Job requeued with a fresh attempt budget."),
    "purged": N_("Job and its files purged."),
    "gone": N_("That job is no longer in the failed registry."),
}


class Admin:
    """The dashboard's handlers; each asks `auth` for a logged-in session first."""

    def __init__(self, site: Site, auth: Auth) -> None:
        self.site = site
        self.auth = auth
        self.snapshots = Snapshots(site.settings, site.conn)

    def admin(self, request: Request) -> Response:
        """`/admin`: the dashboard (login first)."""
        session = self.auth.authed(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        # Only the box's own phrases: a link cannot make the dashboard show a text of its choosing.
        note = NOTES.get(request.query_params.get("note", ""), "")
        if note:
            note = self.site.gettext(request)(note)
        cam = request.query_params.get("camera", "")
        if note and cam in self.site.cameras:
            note = f"{self.site.court_name(cam)}: {note}"
        return self.site.page(request, "admin.html", **self._dashboard(session), note=note)

    def panel(self, request: Request) -> Response:
        """The dashboard's body alone, for its live refresh."""
        session = self.auth.authed(request)
        if session is None:
            raise HTTPException(401, "log in again")
        return self.site.page(request, "panel.html", **self._dashboard(session))

    def _dashboard(self, session: dict[str, Any]) -> dict[str, Any]:
        from ops.snapshot import snapshot  # what `gravanois status` shows, from the one place

        snap = snapshot(self.site.settings, self.site.conn, highlights=ADMIN_HIGHLIGHTS)
        return {"snap": snap, "csrf": session["csrf"], "stamp": int(time.time())}

    def snapshot_jpeg(self, request: Request) -> Response:
        """A current frame of a camera (cached: at most one decode per second per camera)."""
        if self.auth.authed(request) is None:
            raise HTTPException(401, "log in first")
        cam = self.site.camera(request)
        jpeg = self.snapshots.get(cam)
        if jpeg is None:
            raise HTTPException(404, "no picture from this camera yet")
        return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "no-store"})

    async def admin_press(self, request: Request) -> Response:
        """The dashboard's press button of one camera."""
        session = self.auth.authed(request)
        cam = self.site.camera(request)
        await self.auth.form(request, session)
        if session is None:
            raise HTTPException(401, "log in first")
        result = await run_in_threadpool(self.site.press_button, cam, "web-admin")
        return RedirectResponse(f"/admin?note={result.state}&camera={cam}", status_code=303)

    async def failed_action(self, request: Request) -> Response:
        """Requeue or purge one failed job (ops/jobs.py, the same operations as `gravanois failed`)."""
        session = self.auth.authed(request)
        form = await self.auth.form(request, session)
        if session is None:
            raise HTTPException(401, "log in first")
        action = request.path_params["action"]
        if action not in ("requeue", "purge"):
            raise HTTPException(404, "no such action")
        note = await run_in_threadpool(self._failed, action, form.get("job", ""))
        return RedirectResponse(f"/admin?note={note}", status_code=303)

    def _failed(self, action: str, job_id: str) -> str:
        """Do `action` to the failed job `job_id`; the note the dashboard then shows (404: no such job)."""
        settings = self.site.settings
        try:
            [row] = jobs.select(jobs.failed_jobs(settings, self.site.conn), (job_id,), all_=False)
        except jobs.JobError:
            raise HTTPException(404, "no such failed job") from None
        if action == "requeue":
            try:
                jobs.requeue(settings, row)
            except jobs.JobError:  # it left the registry meanwhile (another operator, a CLI)
                return "gone"
            event(log, "web_requeue", job_id=job_id)
            return "requeued"
        jobs.purge(settings, [row])
        event(log, "web_purge", job_id=job_id)
        return "purged"
