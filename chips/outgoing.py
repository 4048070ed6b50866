"""The per-tenant outgoing webhook: events signed with HMAC-SHA256, retried with backoff.

Signature header (like Stripe's): `X-Whago-Signature: t=<unix ts>,v1=<hex>` where
v1 = HMAC-SHA256(secret, "<t>.<raw body>"). Receivers recompute it, compare in constant
time and refuse timestamps older than a few minutes; X-Whago-Event-Id dedupes retries.
"""
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial

import requests
from celery import shared_task
from django.conf import settings
from django.core.cache import cache, caches
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from whago import safehttp
from whago.models import Tenant
from whago.pruning import cutoff, prune
from whago.tasks import TenantTask, tenant_of_row

from .models import TenantWebhook, WebhookDelivery

USER_AGENT = "WHAGO-Webhooks/1.0"
NO_WEBHOOK_LOCAL_SECONDS = 3


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def validate_target(url: str) -> None:
    """Refuse URLs that would make our worker call into private networks (SSRF), when saved.

    The same check runs again, on the address actually connected to, at every delivery
    (whago.safehttp): a name may resolve elsewhere by then.
    """
    try:
        safehttp.check_url(url)
    except safehttp.UnsafeURL as exc:
        raise ValidationError(exc.message, code=exc.code)


def _no_webhook_key(tenant_id: int) -> str:
    return f"chips:no-webhook:{tenant_id}"


def set_webhook(tenant: Tenant, url: str, is_active: bool = True) -> TenantWebhook:
    """Create or change the tenant's webhook (the secret is kept when the URL changes)."""
    validate_target(url)
    with scope(tenant=tenant.pk):
        webhook, _created = TenantWebhook.objects.update_or_create(
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
    with scope(tenant=tenant_id):
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
    transaction.on_commit(lambda: deliver_webhook.delay(delivery.pk, tenant_id=tenant_id))
    return delivery


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): exponential, capped."""
    return min(settings.OUTGOING_WEBHOOK_BACKOFF_SECONDS * (2 ** (attempt - 1)), 1800)


# A claimed delivery belongs to its caller this long (DNS, connect and answer, with slack);
# after that a crashed worker's delivery is taken up again.
def _claim_seconds() -> float:
    return 3 * settings.OUTGOING_WEBHOOK_TIMEOUT + 30


# Clocks of different hosts may disagree this much about when a retry is due.
CLOCK_SLACK = timedelta(seconds=2)


def _claim(delivery_id: int) -> tuple[WebhookDelivery, str] | float | None:
    """Take a pending delivery for one attempt and commit: (delivery, secret), seconds to
    come back when it is not due yet (or another worker's attempt is in flight), None when done."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update(skip_locked=True).filter(pk=delivery_id).first()
        if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
            return None  # already handled, or another worker is claiming it right now
        now = timezone.now()
        if delivery.next_attempt_at and delivery.next_attempt_at > now + CLOCK_SLACK:
            return (delivery.next_attempt_at - now).total_seconds()
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=_claim_seconds())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        webhook = TenantWebhook.objects.filter(tenant_id=delivery.tenant_id).first()
        return delivery, webhook.secret if webhook else ""


def _failure(exc: requests.RequestException) -> str:
    """What the delivery log says about a failed call. Every refused address reads the same,
    so the log cannot tell a closed port from an open one inside our network."""
    if isinstance(exc, safehttp.AddressNotAllowed):
        return _("Address not allowed: the URL points to a private or local address.")
    if isinstance(exc, requests.Timeout):
        return _("Could not reach the endpoint: it did not answer in time.")
    if isinstance(exc, requests.exceptions.SSLError):
        return _("Could not reach the endpoint: its TLS certificate was refused.")
    return _("Could not reach the endpoint: the connection failed.")


def attempt_delivery(delivery_id: int) -> float | None:
    """POST one delivery; returns the seconds to wait before retrying, or None when done. Run in the
    delivery's tenant's scope (deliver_webhook).

    Claim (commit), call, record: no transaction or row lock is held during the call.
    """
    claimed = _claim(delivery_id)
    if not isinstance(claimed, tuple):
        return claimed
    delivery, secret = claimed
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Whago-Event": delivery.event,
        "X-Whago-Event-Id": str(delivery.event_id),
        "X-Whago-Signature": sign(secret, int(time.time()), body),
    }
    response_status, error = None, ""
    try:
        response = safehttp.post(delivery.url, data=body, headers=headers, timeout=settings.OUTGOING_WEBHOOK_TIMEOUT)
        response_status = response.status_code
        if not 200 <= response.status_code < 300:
            error = _("The endpoint answered HTTP %(code)s.") % {"code": response.status_code}
    except requests.RequestException as exc:
        error = _failure(exc)
    return _record(delivery, response_status, error)


def _record(delivery: WebhookDelivery, response_status: int | None, error: str) -> float | None:
    """Store the outcome of the claimed attempt; returns the seconds before the next one."""
    now = timezone.now()
    wait = None
    changes = {"response_status": response_status, "last_error": error[:500], "next_attempt_at": None}
    if not error:
        changes.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now)
    elif delivery.attempts >= settings.OUTGOING_WEBHOOK_MAX_ATTEMPTS:
        changes.update(status=WebhookDelivery.Status.FAILED)
    else:
        wait = backoff(delivery.attempts)
        changes.update(next_attempt_at=now + timedelta(seconds=wait))
    # Only while the claim is still ours: a worker that took it up after our claim ran out records its own.
    recorded = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, status=WebhookDelivery.Status.PENDING
    ).update(**changes)
    return wait if recorded else None


def prune_deliveries() -> int:
    """Delete deliveries older than CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS; one still pending a retry stays."""
    with scopes_disabled():  # a sweep over every tenant's log
        old = WebhookDelivery.objects.filter(created_at__lt=cutoff(settings.CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS))
        return prune(old.exclude(status=WebhookDelivery.Status.PENDING))


def overdue_deliveries(limit: int = 500) -> list[tuple[int, int]]:
    """(delivery id, tenant id) of every tenant's pending deliveries whose task was lost: never tried
    OUTGOING_WEBHOOK_OVERDUE_SECONDS after they were stored (the broker was down when they were queued),
    or a retry or a claim that many seconds past due (a Redis restart without its queue, a worker killed
    mid-call). Queuing one again is harmless: each attempt is claimed (_claim) before the call."""
    late = timezone.now() - timedelta(seconds=settings.OUTGOING_WEBHOOK_OVERDUE_SECONDS)
    with scopes_disabled():  # a sweep over every tenant's deliveries
        pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
        never_tried = pending.filter(next_attempt_at__isnull=True, created_at__lt=late)
        past_due = pending.filter(next_attempt_at__lt=late)
        return list((never_tried | past_due).order_by("created_at").values_list("pk", "tenant_id")[:limit])


# --- tasks (names kept as chips.tasks.* for queued tasks and beat) -----------------------------------


@shared_task(base=TenantTask, name="chips.tasks.deliver_webhook", acks_late=True,
             legacy_tenant=tenant_of_row(WebhookDelivery.objects))
def deliver_webhook(tenant: Tenant, delivery_id: int) -> None:
    """Send one outgoing webhook; schedules its own retry with backoff when it fails. Queued with
    tenant_id=, run in its scope; one queued in its old form runs in the delivery's tenant."""
    wait = attempt_delivery(delivery_id)
    if wait is not None:
        deliver_webhook.apply_async((delivery_id,), {"tenant_id": tenant.pk}, countdown=wait)


@shared_task(name="chips.tasks.redeliver_webhooks", expires=50)
def redeliver_webhooks() -> int:
    """Beat: queue again the deliveries whose task was lost (overdue_deliveries)."""
    overdue = overdue_deliveries()
    for delivery_id, tenant_id in overdue:
        deliver_webhook.delay(delivery_id, tenant_id=tenant_id)
    return len(overdue)


@shared_task(name="chips.tasks.prune_webhook_deliveries", expires=3000)
def prune_webhook_deliveries() -> int:
    """Beat: delete the delivery log older than CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS (pending retries kept)."""
    return prune_deliveries()
