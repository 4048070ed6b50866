import hashlib
import hmac
import json

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips import outgoing
from chips.models import TenantWebhook, WebhookDelivery


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@pytest.mark.django_db
def test_owner_sets_the_webhook_in_the_portal(owner_client, receiver):
    response = owner_client.post(reverse("webhook_settings"), {"url": receiver.url + "/hook", "is_active": "on"})
    assert response.status_code == 302
    with scopes_disabled():
        webhook = TenantWebhook.objects.get(tenant=owner_client.tenant)
    assert webhook.url == receiver.url + "/hook" and webhook.secret.startswith("whsec_")
    page = owner_client.get(reverse("webhook_settings")).content.decode()
    assert webhook.secret in page


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://127.0.0.1/x", "https://10.0.0.1/x"])
def test_bad_or_private_urls_are_refused_in_production(owner_client, settings, url):
    settings.OUTGOING_HTTP_ALLOW_LOOPBACK = False
    response = owner_client.post(reverse("webhook_settings"), {"url": url, "is_active": "on"})
    assert response.status_code == 200
    assert response.context["form"].errors["url"]
    with scopes_disabled():
        assert not TenantWebhook.objects.exists()


def test_events_are_signed_and_delivered_by_the_worker(celery_worker, make_owner, receiver):
    _, tenant = make_owner()
    webhook = outgoing.set_webhook(tenant, receiver.url + "/hook")
    delivery = outgoing.emit(tenant.pk, "message.status", {"id": 1, "status": "DELIVERED"})

    request = receiver.wait_for(1)[0]
    assert verify(webhook.secret, request["headers"]["X-Whago-Signature"], request["body"])
    assert request["headers"]["X-Whago-Event-Id"] == str(delivery.event_id)
    assert json.loads(request["body"])["data"] == {"id": 1, "status": "DELIVERED"}
    _wait_status(delivery, WebhookDelivery.Status.DELIVERED)


@pytest.mark.worker_env(OUTGOING_WEBHOOK_BACKOFF_SECONDS="0.3", OUTGOING_WEBHOOK_MAX_ATTEMPTS="5")
def test_failures_are_retried_with_backoff_then_delivered_once(celery_worker, make_owner, receiver):
    _, tenant = make_owner()
    outgoing.set_webhook(tenant, receiver.url)
    receiver.statuses = [500, 503]
    delivery = outgoing.emit(tenant.pk, "chip.status", {"chip": 7, "status": "WORKING"})

    requests = receiver.wait_for(3)
    assert {r["headers"]["X-Whago-Event-Id"] for r in requests} == {str(delivery.event_id)}
    delivery = _wait_status(delivery, WebhookDelivery.Status.DELIVERED)
    assert delivery.attempts == 3 and delivery.response_status == 200
    assert len(receiver.requests) == 3


@pytest.mark.worker_env(OUTGOING_WEBHOOK_BACKOFF_SECONDS="0.1", OUTGOING_WEBHOOK_MAX_ATTEMPTS="3")
def test_gives_up_after_the_last_attempt_and_logs_why(celery_worker, make_owner, receiver):
    _, tenant = make_owner()
    outgoing.set_webhook(tenant, receiver.url)
    receiver.statuses = [500] * 10
    delivery = outgoing.emit(tenant.pk, "chip.status", {"chip": 7})
    delivery = _wait_status(delivery, WebhookDelivery.Status.FAILED)
    assert delivery.attempts == 3 and "500" in delivery.last_error


@pytest.mark.django_db
def test_no_webhook_no_delivery(make_owner):
    _, tenant = make_owner()
    assert outgoing.emit(tenant.pk, "ping", {}) is None


@pytest.mark.django_db
def test_delivery_log_is_per_tenant(client, make_owner, receiver):
    owner_a, tenant_a = make_owner()
    owner_b, _ = make_owner()
    outgoing.set_webhook(tenant_a, receiver.url)
    outgoing.emit(tenant_a.pk, "secret.event.of.a", {})
    client.force_login(owner_b)
    page = client.get(reverse("webhook_settings")).content.decode()
    assert "secret.event.of.a" not in page


def _wait_status(delivery, status, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with scopes_disabled():
            delivery = WebhookDelivery.objects.get(pk=delivery.pk)
        if delivery.status == status:
            return delivery
        time.sleep(0.1)
    raise AssertionError(f"delivery stayed {delivery.status}: {delivery.last_error}")


@pytest.mark.django_db
def test_the_redeliver_sweep_picks_only_deliveries_whose_task_was_lost(make_owner, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.OUTGOING_WEBHOOK_OVERDUE_SECONDS = 120
    _, tenant = make_owner()
    now = timezone.now()
    late, early = now - timedelta(seconds=300), now - timedelta(seconds=30)
    pending, delivered = WebhookDelivery.Status.PENDING, WebhookDelivery.Status.DELIVERED
    rows = {
        "never tried, late": (pending, late, None),
        "never tried, just stored": (pending, early, None),
        "retry past due": (pending, late, late),
        "retry due soon": (pending, late, now + timedelta(seconds=60)),
        "retry just due": (pending, late, early),
        "delivered long ago": (delivered, late, None),
    }
    ids = {}
    with scopes_disabled():
        for name, (status, created_at, next_attempt_at) in rows.items():
            delivery = WebhookDelivery.objects.create(tenant=tenant, event="chip.status", url="http://127.0.0.1/x",
                                                      payload={}, status=status, next_attempt_at=next_attempt_at)
            WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=created_at)
            ids[delivery.pk] = name
    overdue = outgoing.overdue_deliveries()
    assert sorted(ids[pk] for pk, _tenant in overdue) == ["never tried, late", "retry past due"]
    assert {tenant_id for _pk, tenant_id in overdue} == {tenant.pk}
