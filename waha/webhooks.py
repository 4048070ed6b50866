"""The receiver of WAHA webhooks: POST /api/v1/webhooks/waha/<container id>/<token>.

Each container's sessions post to their own URL (WahaContainer.webhook_url), which carries
a secret derived from the container's webhook key. How an event is authenticated follows
what the server can do:
- a server that signs (Plus) must sign: X-Webhook-Hmac, hex HMAC-SHA512 of the raw body
  with the container's key;
- a server that signs nothing (Core 2024.10) is authenticated by the URL token alone,
  compared in constant time;
- the older routes without a token (no id, or the id only) need the signature.
A wrong token or a bad signature → 401 and nothing stored.

Duplicates are dropped only by an id the sender vouches for: the `id` of a signed body.
Unsigned events carry none (and an unsigned request-id header proves nothing), so each is
stored and applied; what they do is idempotent (a status is set, an ack only moves a
message forward, an inbound message is recorded once per WhatsApp id).
An unknown container or session → 202 and a log line, never a 500.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid

from django.conf import settings
from django.core.cache import caches
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_scopes import scope, scopes_disabled

from whago.rest import RETRY_AFTER_SECONDS, UNAVAILABLE

from . import signals
from .models import SessionStatus, WahaContainer, WahaSession, WebhookEvent

log = logging.getLogger(__name__)

HMAC_HEADER = "HTTP_X_WEBHOOK_HMAC"
ALGORITHM_HEADER = "HTTP_X_WEBHOOK_HMAC_ALGORITHM"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value):
    """The event with NUL characters and lone surrogates (which PostgreSQL cannot store)
    removed from every string: a poison event is stored and acknowledged, never retried forever."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


def sign(key: str, body: bytes) -> str:
    """The signature WAHA puts in X-Webhook-Hmac."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def _signed_by(container: WahaContainer, request: HttpRequest, body: bytes) -> bool:
    given = request.META.get(HMAC_HEADER, "")
    algorithm = request.META.get(ALGORITHM_HEADER, "sha512").lower()
    if not given or algorithm != "sha512":
        return False
    return hmac.compare_digest(sign(container.webhook_key, body), given.strip().lower())


def _authentic(container: WahaContainer, request: HttpRequest, body: bytes, token: str | None) -> tuple[bool, bool]:
    """(authentic, signed) for an event posted for `container` with the URL `token`."""
    signed = _signed_by(container, request, body)
    if token is not None and not hmac.compare_digest(token.encode(), container.webhook_token.encode()):
        return False, signed
    if token is None or container.signs_webhooks:
        return signed, signed
    return True, signed


def _answer(http_status: int, **data) -> JsonResponse:
    return JsonResponse(data, status=http_status)


# Every event names its container and session. Both rows change rarely (a container's key
# never does), so this process remembers them for a few seconds instead of reading them for
# each event. A session.status event always reads its session afresh (it writes to it), and
# an event whose container was deleted meanwhile is ignored like an unknown container.
LOOKUP_SECONDS = 30


def _lookups():
    return caches["local"]


def _container(container_id: int) -> WahaContainer | None:
    key = f"waha:webhook-container:{container_id}"
    container = _lookups().get(key)
    if container is None:
        container = WahaContainer.objects.select_related("tenant").filter(pk=container_id)[:1]
        container = container[0] if container else None
        if container is not None:
            _lookups().set(key, container, LOOKUP_SECONDS)
    return container


def _session(container: WahaContainer, remote_name: str, fresh: bool) -> WahaSession | None:
    key = f"waha:webhook-session:{container.pk}:{remote_name}"
    session = None if fresh else _lookups().get(key)
    if session is None:
        found = WahaSession.objects.select_related("tenant").filter(
            container_id=container.pk, remote_name=remote_name)[:1]
        session = found[0] if found else None
        if session is not None:
            _lookups().set(key, session, LOOKUP_SECONDS)
    return session


def forget(container_id: int) -> None:
    """Drop what this process remembers of a container (it was deleted)."""
    _lookups().delete(f"waha:webhook-container:{container_id}")


@csrf_exempt
@require_POST
def receive(request: HttpRequest, container_id: int | None = None, token: str | None = None) -> JsonResponse:
    """Authenticate, deduplicate, store and dispatch one webhook event."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > settings.WAHA_WEBHOOK_MAX_BYTES:
        return _answer(413, error="body too large")
    body = request.read(settings.WAHA_WEBHOOK_MAX_BYTES + 1)
    if len(body) > settings.WAHA_WEBHOOK_MAX_BYTES:
        return _answer(413, error="body too large")

    with scopes_disabled():
        if container_id is not None:
            container = _container(container_id)
            candidates = [container] if container else []
        else:
            candidates = _candidates(body)
        if not candidates:
            log.warning("webhook for unknown container %s ignored", container_id)
            return _answer(202, status="ignored", reason="unknown container")
        container, signed = None, False
        for candidate in candidates:
            authentic, signed = _authentic(candidate, request, body, token)
            if authentic:
                container = candidate
                break
        if container is None:
            log.warning("webhook with a bad token or signature refused (container %s)", container_id)
            return _answer(401, error="bad signature")

        try:
            data = clean_text(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            return _answer(400, error="body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return _answer(400, error="not a WAHA event")
        remote_name = str(data.get("session") or "")
        session = _session(container, remote_name, fresh=data["event"] == "session.status")
        if session is None:
            log.warning("webhook %s for unknown session %r of %s ignored", data["event"], remote_name, container)
            return _answer(202, status="ignored", reason="unknown session")
        # Only a signed body's own id is vouched for by the sender.
        event_id = str(data.get("id") or "") if signed else ""
        event_id = event_id[:100] or f"unsigned:{uuid.uuid4().hex}"

        try:
            with transaction.atomic():
                event = WebhookEvent.objects.create(
                    tenant_id=session.tenant_id,
                    container=container,
                    event_id=event_id,
                    event=data["event"][:64],
                    session=remote_name[:100],
                    payload=data,
                )
                _dispatch(container, session, event, data)
        except signals.RetryLater:
            # A receiver that cannot apply the event yet: nothing was stored; WAHA (Plus) delivers
            # the event again later.
            log.info("webhook %s of %s: to be delivered again later", event_id, container)
            response = _answer(503, error="the event cannot be applied yet")
            response["Retry-After"] = "2"
            return response
        except UNAVAILABLE as exc:
            # Redis (the broker or the cache) is down. Raised inside the transaction, nothing was
            # stored; raised by a task queued on commit, the event was stored and applied, and its
            # follow-up is taken up by the sweeps (chips.tasks.redeliver_webhooks, chips.tasks.sweep_sends).
            # Either way WAHA is told to come back: a retry of a stored event is a duplicate.
            log.warning("webhook %s of %s: Redis unavailable (%r), to be delivered again", event_id, container, exc)
            response = _answer(503, error="temporarily unavailable, retry later")
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        except IntegrityError:
            if WebhookEvent.objects.filter(container=container, event_id=event_id).exists():
                return _answer(200, status="duplicate")
            if not WahaContainer.objects.filter(pk=container.pk).exists():
                forget(container.pk)
                log.warning("webhook for deleted container %s ignored", container.pk)
                return _answer(202, status="ignored", reason="unknown container")
            raise
    return _answer(200, status="stored")


def _candidates(body: bytes) -> list[WahaContainer]:
    """Containers that hold the session named in the body (route without a container id)."""
    try:
        name = str(json.loads(body).get("session") or "")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []
    ids = WahaSession.objects.filter(remote_name=name).values_list("container_id", flat=True)[:500]
    return list(WahaContainer.objects.filter(pk__in=list(ids)))


def _dispatch(container: WahaContainer, session: WahaSession, event: WebhookEvent, data: dict) -> None:
    """Update the session record and send the matching signal (inside the storing transaction)."""
    payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
    me = data.get("me") if isinstance(data.get("me"), dict) else None
    tenant = session.tenant  # a shared (external) server has no tenant: its session does
    common = {
        "container": container,
        "tenant": tenant,
        "session": session.name,
        "waha_session": session,
        "event": event,
        "event_id": event.event_id,
        "payload": payload,
        "me": me,
    }
    with scope(tenant=tenant):
        if event.event == "session.status":
            status = str(payload.get("status") or "")
            changes = {}
            if status in SessionStatus.values:
                changes["status"] = session.status = status
            if me and me.get("id"):
                changes["me_id"] = session.me_id = str(me["id"])[:64]
                changes["me_push_name"] = session.me_push_name = str(me.get("pushName") or "")[:128]
            if changes:
                WahaSession.objects.filter(pk=session.pk).update(**changes)
            signals.session_status_changed.send(sender=WahaContainer, status=status, **common)
        elif event.event == "message":
            signals.message_received.send(sender=WahaContainer, message=payload, **common)
        elif event.event == "message.ack":
            try:
                ack = int(payload.get("ack"))
            except (TypeError, ValueError):
                ack = 0
            signals.message_ack.send(
                sender=WahaContainer,
                message_id=str(payload.get("id") or ""),
                ack=ack,
                ack_name=str(payload.get("ackName") or ""),
                **common,
            )
