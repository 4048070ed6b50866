"""Celery tasks of the waha app: thin wrappers around waha.manager.

Beat runs the sweeps (CELERY_BEAT_SCHEDULE in whago/settings.py): health every 30 s, stats and
alerts every 60 s, orphan cleanup and the pruning of old webhook events every hour.
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django_scopes import scopes_disabled

from whago.pruning import cutoff, prune
from whago.tasks import TenantTask, tenant_of_row

from . import manager, ops
from .client import ContainerUnreachable, WahaServerError
from .models import WahaSession, WebhookEvent
from .runtime import RuntimeFailure

# Transient failures worth retrying: the container is (re)starting or overloaded.
TRANSIENT = (ContainerUnreachable, WahaServerError, manager.ContainerNotReady)


@shared_task(base=TenantTask, autoretry_for=(*TRANSIENT, RuntimeFailure), retry_backoff=5,
             retry_kwargs={"max_retries": 5})
def resize_containers(tenant) -> list[str]:
    """Apply the tenant's plan limits to its containers (queued with tenant_id=)."""
    return manager.resize_containers(tenant)


@shared_task(base=TenantTask, autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3},
             legacy_tenant=tenant_of_row(WahaSession.objects))
def delete_session(tenant, session_id: int) -> None:
    """Delete one of the tenant's sessions (queued with tenant_id=; one queued in its old form, before a
    deploy, runs in the session's tenant)."""
    session = WahaSession.objects.select_related("container").filter(pk=session_id).first()
    if session:
        manager.delete_session(session)


@shared_task(expires=25)
def health_sweep() -> dict:
    with ops.alone("health", 300) as alone:
        return manager.health_sweep() if alone else {"skipped": ["another health sweep is running"]}


@shared_task(expires=55)
def stats_sweep() -> dict:
    with ops.alone("stats", 300) as alone:
        return manager.stats_sweep() if alone else {"skipped": 1}


@shared_task(expires=55)
def alert_sweep() -> dict:
    with ops.alone("alerts", 300) as alone:
        return manager.alert_sweep() if alone else {"skipped": 1}


@shared_task(expires=3000)
def cleanup_orphans() -> dict:
    with ops.alone("orphans", 3000) as alone:
        return manager.cleanup_orphans() if alone else {"skipped": ["another cleanup is running"]}


# Stored acks settle interrupted sends (chips.sending): never pruned younger than this.
EVENT_RETENTION_MIN_DAYS = 2


@shared_task(expires=3000)
def prune_webhook_events() -> int:
    """Delete received webhooks older than WAHA_WEBHOOK_EVENT_RETENTION_DAYS (at least 2 days).

    An event is applied in the transaction that stores it (waha.webhooks), so none waits for
    processing; the table keeps them for deduplication and as evidence of acks."""
    days = max(settings.WAHA_WEBHOOK_EVENT_RETENTION_DAYS, EVENT_RETENTION_MIN_DAYS)
    with scopes_disabled():  # a sweep over every tenant's events
        return prune(WebhookEvent.objects.filter(received_at__lt=cutoff(days)))


# The operators' console's tasks (run_container_action, run_orphan_cleanup, read_container_logs) live
# in waha/ops.py with the code they run, named waha.tasks.<name>; importing ops above registers them.
