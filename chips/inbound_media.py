"""The files contacts send: downloaded from the chip's own WAHA server into the message's file field.

WAHA saves a received message's media and names it in the `message` webhook as `media.url`
(`<WAHA_BASE_URL>/api/files/<session>/<id>.<ext>`, served behind the API key for
WHATSAPP_FILES_LIFETIME, 180 s by default). A null url (download off, mimetype skipped, a failed
download: `media.error`) means that server cannot give the file; the thread says so.

The URL comes from a webhook, so it is trusted only so far: it must be on the chip's container's
own origin (scheme, host and port of WahaContainer.base_url) under /api/files/; anything else is
refused without a request (no SSRF through a forged or misconfigured webhook). Redirects are not
followed, the size is bounded by CHIPS_INBOUND_MEDIA_MAX_MB (Content-Length and the bytes read),
each request by CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS. Transport errors and 5xx are retried by the
task with backoff; storing is done once per message (row lock, file field empty).
"""
from __future__ import annotations

import logging
import mimetypes
import posixpath
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.text import get_valid_filename
from django_scopes import scopes_disabled

from waha.client import ContainerUnreachable, WahaClient, WahaError

from .models import Message

log = logging.getLogger(__name__)

# Message.error of a received message whose file is not kept (the thread explains each).
UNAVAILABLE = Message.MediaError.UNAVAILABLE.value
TOO_LARGE = Message.MediaError.TOO_LARGE.value
REFUSED = Message.MediaError.REFUSED.value


class Transient(Exception):
    """The server did not answer or failed (5xx): worth another try."""


def max_bytes() -> int:
    return int(settings.CHIPS_INBOUND_MEDIA_MAX_MB * 1024 * 1024)


def expected(payload: dict) -> tuple[bool, str]:
    """(has media, its url or "") of a WAHA message payload."""
    media = payload.get("media") if isinstance(payload.get("media"), dict) else None
    has_media = bool(payload.get("hasMedia")) or media is not None
    url = media.get("url") if media and not media.get("error") else None
    return has_media, url if isinstance(url, str) else ""


def allowed(url: str, base_url: str) -> bool:
    """Whether url is a file of the WAHA server at base_url (same scheme, host, port; /api/files/...)."""
    try:
        given, own = urlsplit(url), urlsplit(base_url)
        same_origin = (given.scheme, given.hostname, given.port) == (own.scheme, own.hostname, own.port)
    except ValueError:
        return False
    if not same_origin or given.username or given.password or given.scheme not in ("http", "https"):
        return False
    path = given.path
    prefix = own.path.rstrip("/") + "/api/files/"
    return path.startswith(prefix) and posixpath.normpath(path) == path and ".." not in path.split("/")


def give_up(message_id: int) -> None:
    """The server never answered: the file is not available."""
    _finish(message_id, UNAVAILABLE)


def _finish(message_id: int, error: str) -> None:
    with scopes_disabled():
        Message.objects.filter(pk=message_id, media="").update(error=error)


def _name(message: Message, url: str) -> str:
    base = message.media_name or posixpath.basename(urlsplit(url).path)
    if "." not in base:
        base += mimetypes.guess_extension(message.media_mimetype.split(";")[0].strip()) or ""
    return get_valid_filename(base)[:100] or "file"


def download(message_id: int, url: str) -> str:
    """Fetch and store one received message's file; returns what happened (stored, kept, or an error
    code). Raises Transient when another attempt may succeed."""
    with scopes_disabled():
        message = Message.objects.select_related("chip__waha_session__container").filter(
            pk=message_id, direction=Message.Direction.IN).first()
    if message is None:
        return "missing"
    if message.media:
        return "kept"  # a duplicated task: stored already
    session = message.chip.waha_session
    container = session.container if session else None
    if container is None or not allowed(url, container.base_url):
        log.warning("message %s: media url %r is not on its WAHA server; not fetched", message_id, url)
        _finish(message_id, REFUSED)
        return REFUSED
    timeout = settings.CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS
    client = WahaClient.for_container(container, timeout=(min(timeout, 10), timeout))
    try:
        # allowed() checked the path starts with the server's own: ask for the rest of it.
        data = client.download(urlsplit(url).path[len(urlsplit(container.base_url).path.rstrip("/")):], max_bytes())
    except ContainerUnreachable as exc:
        raise Transient(str(exc)) from exc
    except WahaError as exc:
        if exc.status is not None and (exc.status >= 500 or exc.status == 429):
            raise Transient(str(exc)) from exc
        # 404: gone (WAHA removes files after their lifetime); 401/3xx: not ours to chase.
        _finish(message_id, UNAVAILABLE)
        return UNAVAILABLE
    if data is None:
        _finish(message_id, TOO_LARGE)
        return TOO_LARGE
    return _store(message_id, url, data)


def _store(message_id: int, url: str, data: bytes) -> str:
    with scopes_disabled(), transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            return "missing"
        if message.media:
            return "kept"
        message.media.save(_name(message, url), ContentFile(data), save=False)
        message.error = ""
        message.save(update_fields=["media", "error"])
    return "stored"
