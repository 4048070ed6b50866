"""Received webhooks are pruned after WAHA_WEBHOOK_EVENT_RETENTION_DAYS (never before 2 days), in batches."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_scopes import scopes_disabled

from waha import tasks
from waha.models import WahaContainer, WebhookEvent
from whago.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def add_event():
    tenant = Tenant.objects.create(name="Empresa Poda", slug="empresa-poda-waha")
    container = WahaContainer.objects.create(tenant=tenant, name="whago-prune-1", runtime="docker", port=21990)
    counter = iter(range(1, 10_000))

    def add(days_old: float) -> int:
        with scopes_disabled():
            event = WebhookEvent.objects.create(tenant=tenant, container=container, event_id=f"e{next(counter)}",
                                                event="message.ack", session="chip_1", payload={})
            WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(days=days_old))
        return event.pk

    return add


def kept() -> set[int]:
    with scopes_disabled():
        return set(WebhookEvent.objects.values_list("pk", flat=True))


def test_old_events_go_in_batches_recent_ones_stay(add_event, settings):
    settings.WAHA_WEBHOOK_EVENT_RETENTION_DAYS = 7
    settings.PRUNE_BATCH_SIZE = 2
    old = [add_event(8) for _ in range(5)]
    recent = {add_event(6.9), add_event(0)}

    with CaptureQueriesContext(connection) as queries:
        assert tasks.prune_webhook_events() == len(old)
    assert kept() == recent
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "waha_webhookevent"')]
    assert len(deletes) == 3  # 2 + 2 + 1 rows: bounded statements, not one big one


def test_retention_follows_the_setting_but_keeps_two_days_of_ack_evidence(add_event, settings):
    _old, b, c = add_event(3), add_event(1.5), add_event(0.1)
    settings.WAHA_WEBHOOK_EVENT_RETENTION_DAYS = 30
    assert tasks.prune_webhook_events() == 0
    settings.WAHA_WEBHOOK_EVENT_RETENTION_DAYS = 0  # below the floor: still two days kept
    assert tasks.prune_webhook_events() == 1
    assert kept() == {b, c}
