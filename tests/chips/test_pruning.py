"""The outgoing webhook's delivery log is pruned after CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS;
a delivery still pending a retry is kept whatever its age."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import outgoing
from chips.models import WebhookDelivery
from whago.models import Tenant

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status


@pytest.fixture
def add_delivery():
    tenant = Tenant.objects.create(name="Empresa Poda", slug="empresa-poda-chips")

    def add(days_old: float, status: str) -> int:
        with scopes_disabled():
            delivery = WebhookDelivery.objects.create(tenant=tenant, event="message.status", status=status,
                                                      url="https://hooks.example.com.br/whago", payload={})
            WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(days=days_old))
        return delivery.pk

    return add


def kept() -> set[int]:
    with scopes_disabled():
        return set(WebhookDelivery.objects.values_list("pk", flat=True))


def test_old_finished_deliveries_go_pending_ones_stay(add_delivery, settings):
    settings.CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    settings.PRUNE_BATCH_SIZE = 2
    old = [add_delivery(31, Status.DELIVERED) for _ in range(3)] + [add_delivery(40, Status.FAILED)]
    retrying = add_delivery(45, Status.PENDING)
    recent = {add_delivery(29, Status.DELIVERED), add_delivery(1, Status.FAILED), add_delivery(0, Status.PENDING)}

    assert outgoing.prune_webhook_deliveries() == len(old)
    assert kept() == recent | {retrying}


def test_retention_follows_the_setting(add_delivery, settings):
    _old, b = add_delivery(10, Status.DELIVERED), add_delivery(3, Status.DELIVERED)
    settings.CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    assert outgoing.prune_webhook_deliveries() == 0
    settings.CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS = 7
    assert outgoing.prune_webhook_deliveries() == 1
    assert kept() == {b}
