"""Upload: the backend that receives finished highlights, this venue's credentials, the upload pace."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings.fields import RESTART, Concern, setting, url


@dataclass(frozen=True)
class UploadSettings(Concern):
    """Where highlights go after rendering and with which credentials; empty backend: uploads off."""

    title = "Upload"

    api_base: str = setting(
        "",
        "Backend base URL (empty: uploads off).",
        check=url("http://", "https://", like="https://api.example.com", optional=True),
    )
    api_token: str = setting("", "Optional bearer token for the backend.", secret=True)
    client_id: str = setting("", "Backend client id of this venue's owner.")
    venue_id: str = setting("", "Backend venue id.")
    device_secret: str = setting("", "HMAC secret of this device (never logged).", secret=True)
    keep_after_upload: bool = setting(
        True, "Keep local files after a confirmed upload (still bounded).", remote=RESTART
    )
    upload_concurrency: int = setting(1, "Upload workers run in parallel.", at_least=1, remote=RESTART)
    upload_kbps: int = setting(
        0, "Upload bandwidth limit in kbit/s (0: none).", at_least=0, zero="no limit", remote=RESTART
    )

    @property
    def upload_enabled(self) -> bool:
        """Uploads run only when the backend and the device credentials are configured."""
        return bool(self.api_base and self.client_id and self.venue_id and self.device_secret)
