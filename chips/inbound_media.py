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

The fetch is queued when the webhook's transaction commits; while the broker is down that task is
lost. Beat's requeue_lost_media (every minute) queues it again for a received file that has neither
its file nor an error CHIPS_INBOUND_MEDIA_LOST_SECONDS after its webhook, with the URL read back from
the stored `message` webhook (the Message row does not keep it); at most once per retry span each.
"""
from __future__ import annotations

import hashlib
import logging
import mimetypes
import posixpath
from datetime import timedelta
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename
from django_scopes import scopes_disabled

from waha.client import ContainerUnreachable, WahaClient, WahaError
from waha.models import WahaContainer, WebhookEvent
from whago.models import Tenant
from whago.tasks import TenantTask, tenant_of_row

from .models import Chip, Message

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
    Message.objects.filter(pk=message_id, media="").update(error=error)


def _name(message: Message, url: str) -> str:
    base = message.media_name or posixpath.basename(urlsplit(url).path)
    if "." not in base:
        base += mimetypes.guess_extension(message.media_mimetype.split(";")[0].strip()) or ""
    return get_valid_filename(base)[:100] or "file"


def download(message_id: int, url: str) -> str:
    """Fetch and store one received message's file; returns what happened (stored, kept, or an error
    code). Raises Transient when another attempt may succeed. Run in the message's tenant's scope."""
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
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id).first()
        if message is None:
            return "missing"
        if message.media:
            return "kept"
        message.media.save(_name(message, url), ContentFile(data), save=False)
        message.error = ""
        message.save(update_fields=["media", "error"])
    return "stored"


# --- the task (name kept as chips.tasks.fetch_inbound_media for queued tasks) ---------------------

INBOUND_MEDIA_RETRIES = 5


@shared_task(base=TenantTask, name="chips.tasks.fetch_inbound_media", bind=True, acks_late=True,
             max_retries=INBOUND_MEDIA_RETRIES, legacy_tenant=tenant_of_row(Message.objects))
def fetch_inbound_media(self, tenant: Tenant, message_id: int, url: str) -> str:
    """Download a received message's file from its chip's WAHA server (retried with backoff while the
    server does not answer; then the thread says the file is not available). Queued with tenant_id=,
    run in its scope; one queued in its old form runs in the message's tenant."""
    try:
        return download(message_id, url)
    except Transient as exc:
        if self.request.retries < self.max_retries:
            wait = min(settings.CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS * 2**self.request.retries, 300)
            raise self.retry(exc=exc, countdown=wait) from exc
        give_up(message_id)
        return UNAVAILABLE


# --- fetches lost with their task (queued on commit while the broker was down) ----------------

# Webhooks older than this are not looked at: WAHA keeps a file WHATSAPP_FILES_LIFETIME (180 s).
REQUEUE_WINDOW = timedelta(hours=1)
REQUEUE_BATCH = 500


def _retry_span() -> float:
    """Seconds a fetch task may still be at work (every attempt's timeout and every backoff)."""
    backoff = sum(min(settings.CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS * 2**n, 300) for n in range(INBOUND_MEDIA_RETRIES))
    return backoff + (INBOUND_MEDIA_RETRIES + 1) * settings.CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS


def lost_fetches(now=None) -> list[tuple[int, str, int]]:
    """(message id, media url, tenant id) of every tenant's received files whose fetch never ended: a
    stored `message` webhook with a media url, received between REQUEUE_WINDOW and
    CHIPS_INBOUND_MEDIA_LOST_SECONDS ago, whose message has neither its file nor an error. Read per
    container (its received_at index), the messages by their (chip, direction, waha_id) index."""
    now = now or timezone.now()
    newest = now - timedelta(seconds=settings.CHIPS_INBOUND_MEDIA_LOST_SECONDS)
    found: list[tuple[int, str, int]] = []
    with scopes_disabled():  # a sweep over every container and tenant
        for container_id in WahaContainer.objects.values_list("pk", flat=True):
            urls: dict[str, str] = {}
            events = WebhookEvent.objects.filter(
                container_id=container_id, received_at__gte=now - REQUEUE_WINDOW, received_at__lt=newest,
                event="message").values_list("payload", flat=True)
            for body in events.iterator():
                message = body.get("payload") if isinstance(body, dict) else None
                if isinstance(message, dict) and not message.get("fromMe"):
                    url = expected(message)[1]
                    if url and message.get("id"):
                        urls[str(message["id"])[:200]] = url
            if not urls:
                continue
            chips = Chip.all_objects.filter(waha_session__container_id=container_id).values_list("pk", flat=True)
            waiting = Message.objects.filter(chip_id__in=list(chips), direction=Message.Direction.IN,
                                             waha_id__in=list(urls), media="", error="")
            found += [(pk, urls[waha_id], tenant_id)
                      for pk, waha_id, tenant_id in waiting.values_list("pk", "waha_id", "tenant_id")]
            if len(found) >= REQUEUE_BATCH:
                break
    return found[:REQUEUE_BATCH]


@shared_task(name="chips.tasks.requeue_lost_media", expires=50)
def requeue_lost_media() -> int:
    """Beat: queue again the file fetches whose task was lost; a message at most once per retry span
    (a fetch still retrying is not doubled every minute; a doubled one stores the file once anyway)."""
    queued = 0
    for message_id, url, tenant_id in lost_fetches():
        marker = hashlib.sha256(f"{message_id} {url}".encode()).hexdigest()[:32]
        if cache.add(f"chips:inbound-media-requeued:{marker}", 1, timeout=_retry_span()):
            fetch_inbound_media.delay(message_id, url, tenant_id=tenant_id)
            queued += 1
    if queued:
        log.warning("requeued %s received file fetch(es) whose task was lost", queued)
    return queued
