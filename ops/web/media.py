"""The files the web app serves: a highlight's clip (byte ranges, ETag), its thumbnail, the static files.

Handlers that read files are plain functions, which Starlette runs in its thread pool, so a slow disk
never blocks the event loop that streams clips. A file is always found through the box's records (by
highlight id) or the package's `static/` folder (by exact name): no part of a request becomes a path.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from common.settings import Settings
from ops.web.records import Highlight, local_time
from ops.web.site import PACKAGE, Site

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# More byte ranges than this in one request is refused (416): a player asks for one; many overlapping
# ones only serve to make the box send a clip many times over.
MAX_RANGES = 8


def download_name(settings: Settings, item: Highlight) -> str:
    """`<court's name>_<local date>_<local time>.mp4`: what a player's phone saves (the name's spaces and
    punctuation become dashes: Quadra-Central_2026-12-06_140501.mp4)."""
    court = re.sub(r"[^\w]+", "-", settings.camera(item.camera).label).strip("-") or item.camera
    return f"{court}_{local_time(settings, item.at, '%Y-%m-%d_%H%M%S')}.mp4"


def not_modified(request: Request, etag: str) -> bool:
    """True when the request's If-None-Match names `etag` (answer 304)."""
    wanted = request.headers.get("if-none-match", "")
    return bool(wanted) and any(t.strip().removeprefix("W/") == etag for t in wanted.split(","))


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name → (bytes, content type, ETag) of every file shipped in `static/`, read once."""
    out = {}
    for entry in (importlib.resources.files(PACKAGE) / "static").iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            data = entry.read_bytes()
            out[entry.name] = (data, STATIC_TYPES[suffix], '"' + hashlib.sha256(data).hexdigest()[:20] + '"')
    return out


class Media:
    """The clip, download, thumbnail and static-file handlers."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.static_files = _static_files()

    def video(self, request: Request) -> Response:
        """The watermarked clip, with ranges (206/416), ETag and Last-Modified."""
        return self._file(request, attachment=False)

    def download(self, request: Request) -> Response:
        """The same clip as an attachment named after the court and the time."""
        return self._file(request, attachment=True)

    def _file(self, request: Request, attachment: bool) -> Response:
        item = self.site.highlight(request)
        assert item.video is not None  # records.get returns finished highlights only
        try:
            st = item.video.stat()
        except OSError:
            raise HTTPException(404, "no such highlight") from None
        # The sidecar's sha256 names the content exactly; the size guards against a half-replaced file.
        etag = (
            f'"{item.sha256[:32]}-{st.st_size:x}"' if item.sha256 else f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        )
        headers = {"etag": etag, "cache-control": "public, max-age=3600"}
        wanted = request.headers.get("range")
        if wanted is None and not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        if wanted is not None and wanted.count(",") >= MAX_RANGES:
            return PlainTextResponse(
                "416: too many ranges\n", status_code=416, headers={"content-range": f"bytes */{st.st_size}"}
            )
        return FileResponse(
            item.video,
            media_type="video/mp4",
            headers=headers,
            filename=download_name(self.site.settings, item) if attachment else None,
            content_disposition_type="attachment",
            stat_result=st,
        )

    def thumb(self, request: Request) -> Response:
        """The highlight's thumbnail (cacheable)."""
        item = self.site.highlight(request)
        if item.thumb is None:
            raise HTTPException(404, "no thumbnail")
        try:
            st = item.thumb.stat()
        except OSError:
            raise HTTPException(404, "no thumbnail") from None
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        headers = {"etag": etag, "cache-control": "public, max-age=86400"}
        if not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return FileResponse(item.thumb, media_type="image/jpeg", headers=headers, stat_result=st)

    async def static(self, request: Request) -> Response:
        """A file shipped in the package's `static/` folder, by exact name only."""
        found = self.static_files.get(request.path_params.get("name", ""))
        if found is None:
            raise HTTPException(404, "not found")
        data, ctype, etag = found
        headers = {"etag": etag, "cache-control": "public, max-age=600"}
        if not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=ctype, headers=headers)
