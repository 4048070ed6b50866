"""The per-tenant outgoing webhook: events signed with HMAC-SHA256, retried with backoff.

Signature header (like Stripe's): `X-Whago-Signature: t=<unix ts>,v1=<hex>` where
v1 = HMAC-SHA256(secret, "<t>.<raw body>"). Receivers recompute it, compare in constant
time and refuse timestamps older than a few minutes; X-Whago-Event-Id dedupes retries.
"""
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache, caches
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from whago.models import Tenant

from .models import TenantWebhook, WebhookDelivery

USER_AGENT = "WHAGO-Webhooks/1.0"
NO_WEBHOOK_LOCAL_SECONDS = 3


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def validate_target(url: str) -> None:
    """Refuse URLs that would make our worker call into private networks (SSRF)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(_("Use an http:// or https:// URL."), code="scheme")
    if settings.OUTGOING_WEBHOOK_ALLOW_PRIVATE:
        return
    if parts.scheme != "https":
        raise ValidationError(_("Use an https:// URL."), code="scheme")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise ValidationError(_("The host %(host)s could not be resolved.") % {"host": parts.hostname}, code="dns")
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ValidationError(_("The URL points to a private or local address."), code="private")


def _no_webhook_key(tenant_id: int) -> str:
    return f"chips:no-webhook:{tenant_id}"


def set_webhook(tenant: Tenant, url: str, is_active: bool = True) -> TenantWebhook:
    """Create or change the tenant's webhook (the secret is kept when the URL changes)."""
    validate_target(url)
    webhook, _created = TenantWebhook.objects.with_scopes_disabled().update_or_create(
        tenant=tenant, defaults={"url": url, "is_active": is_active}
    )
    for forget in (cache.delete, caches["local"].delete):
        transaction.on_commit(partial(forget, _no_webhook_key(tenant.pk)))
        forget(_no_webhook_key(tenant.pk))
    return webhook


def rotate_secret(webhook: TenantWebhook) -> TenantWebhook:
    webhook.secret = TenantWebhook._meta.get_field("secret").default()
    webhook.save(update_fields=["secret", "updated_at"])
    return webhook


def emit(tenant_id: int, event: str, data: dict | Callable[[], dict]) -> WebhookDelivery | None:
    """Queue one event for the tenant's webhook, if it has an active one; sent after commit.

    data may be a function building the payload: only called when there is a webhook.
    """
    from .tasks import deliver_webhook

    # Most tenants have no webhook: that is remembered for a minute in the shared cache
    # (set_webhook forgets it at once) and, to spare a cache round trip per message, for a few
    # seconds in this process: a webhook set meanwhile gets the events of other processes
    # (the worker's sends) at most NO_WEBHOOK_LOCAL_SECONDS later.
    key = _no_webhook_key(tenant_id)
    if caches["local"].get(key):
        return None
    if cache.get(key):
        caches["local"].set(key, True, NO_WEBHOOK_LOCAL_SECONDS)
        return None
    if callable(data):
        data = data()
    with scopes_disabled():
        webhook = TenantWebhook.objects.filter(tenant_id=tenant_id, is_active=True).first()
        if webhook is None:
            cache.set(key, True, 60)
            caches["local"].set(key, True, NO_WEBHOOK_LOCAL_SECONDS)
            return None
        payload = {"event": event, "created_at": timezone.now(), "data": data}
        delivery = WebhookDelivery.objects.create(
            tenant_id=tenant_id,
            event=event,
            url=webhook.url,
            payload=json.loads(json.dumps(payload, cls=DjangoJSONEncoder)),
        )
    transaction.on_commit(lambda: deliver_webhook.delay(delivery.pk))
    return delivery


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): exponential, capped."""
    return min(settings.OUTGOING_WEBHOOK_BACKOFF_SECONDS * (2 ** (attempt - 1)), 1800)


def attempt_delivery(delivery_id: int) -> float | None:
    """POST one delivery; returns the seconds to wait before retrying, or None when done."""
    with scopes_disabled(), transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update(skip_locked=True).filter(pk=delivery_id).first()
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
            return None  # already handled, or another worker holds it right now
        webhook = TenantWebhook.objects.filter(tenant_id=delivery.tenant_id).first()
        secret = webhook.secret if webhook else ""
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Whago-Event": delivery.event,
            "X-Whago-Event-Id": str(delivery.event_id),
            "X-Whago-Signature": sign(secret, int(time.time()), body),
        }
        delivery.attempts += 1
        try:
            response = requests.post(
                delivery.url, data=body, headers=headers, timeout=settings.OUTGOING_WEBHOOK_TIMEOUT,
                allow_redirects=False,
            )
            delivery.response_status = response.status_code
            ok = 200 <= response.status_code < 300
            delivery.last_error = "" if ok else _("The endpoint answered HTTP %(code)s.") % {
                "code": response.status_code
            }
        except requests.RequestException as exc:
            ok = False
            delivery.response_status = None
            delivery.last_error = _("Could not reach the endpoint: %(error)s") % {"error": type(exc).__name__}
        wait = None
        if ok:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = timezone.now()
            delivery.next_attempt_at = None
        elif delivery.attempts >= settings.OUTGOING_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            wait = backoff(delivery.attempts)
            delivery.next_attempt_at = timezone.now() + timedelta(seconds=wait)
        delivery.save()
        return wait
