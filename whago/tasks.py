import socket

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_scopes import scopes_disabled

from . import heartbeats
from .models import AuditLog, WorkerHeartbeat
from .pruning import cutoff, prune


@shared_task(bind=True)
def ping(self, token: str) -> None:
    """Answer a heartbeat: proves a worker process picks tasks from the broker (and counts as its heartbeat)."""
    WorkerHeartbeat.objects.filter(token=token, answered_at__isnull=True).update(
        answered_at=timezone.now(), worker=socket.gethostname()
    )
    if self.request.hostname:
        heartbeats.beat(heartbeats.Role.WORKER, self.request.hostname)


@shared_task(expires=3000)
def prune_audit_log() -> int:
    """Delete audit entries older than AUDIT_LOG_RETENTION_DAYS (entries still running are kept)."""
    with scopes_disabled():  # a sweep over every tenant's entries
        old = AuditLog.objects.filter(created_at__lt=cutoff(settings.AUDIT_LOG_RETENTION_DAYS))
        return prune(old.exclude(status=AuditLog.Status.RUNNING))
