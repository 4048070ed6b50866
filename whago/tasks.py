import logging
import socket

from celery import Task, shared_task
from celery._state import _task_stack
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
    # A task converted to a TenantTask may still be delivered in its old form (its arguments, no tenant)
    # for a release after a deploy: legacy_tenant(*args), when set, gives the tenant of the row they
    # name (tenant_of_row), and the task runs in that tenant's scope.
    legacy_tenant = None

    def __call__(self, *args, **kwargs):
        args = list(args)
        positional = "tenant_id" not in kwargs and "tenant" not in kwargs
        if positional and self.legacy_tenant is not None:
            kwargs["tenant_id"], positional = self.legacy_tenant(*args), False
        if positional and not args:
            raise TypeError(f"{self.name} is a TenantTask: queue it with tenant_id=")
        ref = args.pop(0) if positional else kwargs.pop("tenant_id", None) or kwargs.pop("tenant", None)
        tenant = ref if isinstance(ref, Tenant) else Tenant.objects.filter(pk=ref).first() if ref else None
        if tenant is None:
            log.warning("task %s: tenant %s no longer exists; nothing done", self.name, ref)
            return None
        # The body gets the tenant first, then the arguments it was queued with. The request keeps what
        # was queued (with tenant_id=): a retry queues that again, never the Tenant object.
        _task_stack.push(self)
        self.push_request(args=args, kwargs={**kwargs, "tenant_id": tenant.pk})
        try:
            with scope(tenant=tenant):
                return self.run(tenant, *args, **kwargs)
        finally:
            self.pop_request()
            _task_stack.pop()


def tenant_of_row(manager, field: str = "pk"):
    """A TenantTask's legacy_tenant for a task whose old form named a row of `manager`'s model first (its
    id, or a list of ids: the first one's): that row's tenant id, or None when the row is gone."""

    def find(first, *args, **kwargs):
        ref = first[0] if isinstance(first, list | tuple) and first else first
        with scopes_disabled():  # the tenant is not known yet: that is what is looked up
            return manager.filter(**{field: ref}).values_list("tenant_id", flat=True).first()

    return staticmethod(find)


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
