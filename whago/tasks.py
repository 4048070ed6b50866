import logging
import socket

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from . import heartbeats
from .models import AuditLog, Tenant, WorkerHeartbeat
from .pruning import cutoff, prune

log = logging.getLogger(__name__)


class TenantTask(Task):
    """Base of the tasks that work for one tenant (as pretix's EventTask does for an event).

    Declared with `@shared_task(base=TenantTask)`, the task is queued with `tenant_id=<pk>` (or
    `tenant=<pk>`, or the pk as its first argument); the body receives `tenant=<Tenant>` and runs inside
    `django_scopes.scope(tenant=tenant)`, so each of its queries of tenant-owned rows sees that
    tenant's rows only, as in a portal view. Tenant itself is not scoped: loading it needs no
    scopes_disabled. A tenant deleted since the task was queued ends the task, logged, returning None
    (a retry would not bring it back).
    """

    # The body takes `tenant`; callers pass `tenant_id=`: Celery must not check the call against the body.
    typing = False

    def __call__(self, *args, **kwargs):
        args = list(args)
        positional = "tenant_id" not in kwargs and "tenant" not in kwargs
        if positional and not args:
            raise TypeError(f"{self.name} is a TenantTask: queue it with tenant_id=")
        ref = args[0] if positional else kwargs.pop("tenant_id", None) or kwargs.pop("tenant")
        tenant = ref if isinstance(ref, Tenant) else Tenant.objects.filter(pk=ref).first()
        if tenant is None:
            log.warning("task %s: tenant %s no longer exists; nothing done", self.name, ref)
            return None
        if positional:
            args[0] = tenant
        else:
            kwargs["tenant"] = tenant
        with scope(tenant=tenant):
            return super().__call__(*args, **kwargs)


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
