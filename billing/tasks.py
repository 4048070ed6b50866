"""Billing background work: thin wrappers around billing.services."""
from celery import shared_task

from . import services


@shared_task
def expire_subscriptions() -> int:
    """Prepaid plan periods that ended: past due, then FREE after the grace days."""
    return services.expire_subscriptions()
