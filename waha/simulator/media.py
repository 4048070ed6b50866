"""Media of received messages, as WAHA's MediaManager and local storage handle it.

WAHA (src/core/media/MediaManager.ts, local/MediaLocalStorage.ts, both tiers of 2024.10.8 and Plus)
downloads the media of a message it receives when WHATSAPP_DOWNLOAD_MEDIA is true (the default) and
the mimetype starts with one of WHATSAPP_FILES_MIMETYPES (empty: all). It saves the file as
`<session>/<engine message id>.<extension>` and puts `media: {url, mimetype, filename}` in the
message, the url being `<base url>/api/files/<that key>`; the base url is WAHA_BASE_URL, else
`http://<WHATSAPP_API_HOSTNAME>:<port>`. A skipped mimetype gives `media: {url: null, mimetype,
filename}`; a failed download adds `error`. The files are served under /api/files/ (behind the API
key where the key is enforced) and removed after WHATSAPP_FILES_LIFETIME seconds (180).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

# What the mime-types package (mime.extension) gives for the types a phone sends.
EXTENSIONS = {
    "image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
    "audio/ogg": "oga", "audio/ogg; codecs=opus": "oga", "audio/mpeg": "mpga", "audio/mp4": "m4a",
    "video/mp4": "mp4", "application/pdf": "pdf", "text/plain": "txt",
}
MAX_STORED_BYTES = 64 * 1024 * 1024  # the simulator keeps this much in memory, oldest files dropped first


def extension(mimetype: str) -> str:
    """mime.extension(): the usual extension of a type; 'bin' for the unknown ones."""
    known = EXTENSIONS.get(mimetype.lower()) or EXTENSIONS.get(mimetype.split(";")[0].strip().lower())
    return known or "bin"


class FileStore:
    """The files folder: what GET /api/files/<key> serves, for the files' lifetime."""

    def __init__(self, lifetime_seconds: float) -> None:
        self.lifetime = lifetime_seconds
        self.files: OrderedDict[str, tuple[bytes, str, float]] = OrderedDict()
        self.size = 0
        self.served = 0
        self.lock = threading.Lock()

    def save(self, key: str, data: bytes, mimetype: str) -> None:
        with self.lock:
            self._drop(key)
            self.files[key] = (data, mimetype, time.monotonic())
            self.size += len(data)
            while self.size > MAX_STORED_BYTES and len(self.files) > 1:
                self._drop(next(iter(self.files)))

    def _drop(self, key: str) -> None:
        old = self.files.pop(key, None)
        if old is not None:
            self.size -= len(old[0])

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The file and its type, None when absent or past its lifetime (0: kept forever)."""
        with self.lock:
            found = self.files.get(key)
            if found is None:
                return None
            data, mimetype, saved = found
            if self.lifetime and time.monotonic() - saved > self.lifetime:
                self._drop(key)
                return None
            self.served += 1
            return data, mimetype

    def stats(self) -> dict:
        with self.lock:
            return {"stored": len(self.files), "bytes": self.size, "served": self.served}


def wanted(mimetype: str, download: bool, mimetypes: list[str]) -> bool:
    """MediaManager.shouldProcessMimetype with config.mimetypes (download off: nothing matches)."""
    if not download:
        return False
    return not mimetypes or any(mimetype.startswith(prefix) for prefix in mimetypes)


def base_url(cfg) -> str:
    """WhatsappConfigService.baseUrl."""
    return (cfg.base_url or f"http://{cfg.url_host}:{cfg.port}").rstrip("/")
