"""The operators' console for containers: audited actions run by the worker, log tails, utilisation.

The admin (waha/admin.py) asks and the worker does the work (the tasks below, named
waha.tasks.run_container_action, run_orphan_cleanup, read_container_logs): in production only the
worker reaches the Docker engine. Every action is an entry of the audit log (whago.AuditLog),
written when asked and completed by the worker with its result or error.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Avg, Count, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_scopes import scope, scopes_disabled

from whago import audit
from whago.models import AuditLog, Tenant

from . import manager
from .client import SessionNotFound, WahaError
from .models import ContainerStatus, SessionStatus, StatsSample, WahaContainer, WahaSession
from .runtime import RuntimeFailure

log = logging.getLogger(__name__)

LOGS_KEY = "waha:ops:logs:{token}"
UTILISATION_KEY = "waha:ops:utilisation:{days}"


@dataclass(frozen=True)
class Action:
    """A console action on one container."""

    name: str
    label: Any
    permission: str  # the model permission it needs: view, change or delete
    confirm: bool  # destructive: asked again on a confirmation page
    run: Callable[[WahaContainer, dict], tuple[str, dict]]
    internal: bool = False  # started by WHAGO itself (tenant suspension), not offered in the admin


def _start(container: WahaContainer, options: dict) -> tuple[str, dict]:
    _refuse_suspended(container)
    manager.ensure_started(container)  # starts it, or recreates it when the engine lost it
    manager.wait_ready(container)
    resumed = manager.resume_sessions(container)
    return ngettext("Started; %(n)d session resumed.", "Started; %(n)d sessions resumed.", len(resumed)) % {
        "n": len(resumed)
    }, {"resumed": resumed}


def _stop(container: WahaContainer, options: dict) -> tuple[str, dict]:
    manager.stop_container(container)
    return _("Stopped. The health sweep leaves it stopped until it is started again."), {}


def _restart(container: WahaContainer, options: dict) -> tuple[str, dict]:
    _refuse_suspended(container)
    manager.restart_container(container)  # waits until it answers and resumes its sessions
    return _("Restarted; it answers again and its sessions were resumed."), {}


def _delete(container: WahaContainer, options: dict) -> tuple[str, dict]:
    volume = bool(options.get("volume"))
    with scopes_disabled():
        sessions = list(WahaSession.objects.filter(container=container).values_list("name", flat=True))
    manager.delete_container(container, volume=volume)
    kept = _("data volume removed") if volume else _("data volume kept")
    return ngettext(
        "Deleted (%(kept)s); %(n)d session removed with it.", "Deleted (%(kept)s); %(n)d sessions removed with it.",
        len(sessions),
    ) % {"kept": kept, "n": len(sessions)}, {"sessions": sessions, "volume_removed": volume}


def _list_sessions(container: WahaContainer, options: dict) -> tuple[str, dict]:
    found = [
        {
            "name": info.get("name", ""),
            "status": info.get("status", ""),
            "me": (info.get("me") or {}).get("id", "") if isinstance(info.get("me"), dict) else "",
        }
        for info in manager.list_sessions(container)
    ]
    # WAHA's status codes (WORKING…) in the operator's words; one WHAGO does not know is shown as it came.
    labels = dict(SessionStatus.choices)
    listing = ", ".join(f"{s['name']} ({labels.get(s['status'], s['status'])})" for s in found)
    summary = ngettext("%(n)d session", "%(n)d sessions", len(found)) % {"n": len(found)}
    return f"{summary}: {listing}" if found else summary, {"sessions": found}


def _suspend(container: WahaContainer, options: dict) -> tuple[str, dict]:
    """Stop a suspended tenant's sessions (their chips hear it by webhook), then the container —
    or, in a container shared with other tenants, that tenant's sessions only.

    The sessions keep should_run: reactivation starts them again (the health sweep leaves the
    sessions of a suspended tenant alone).
    """
    if container.tenant_id is None:
        return _suspend_in_shared(container, options["tenant"])
    stopped: list[str] = []
    if container.status == ContainerStatus.RUNNING:
        client = manager.client_for(container, retries=0)
        try:
            for info in client.list_sessions(all=True):
                if info.get("status") != SessionStatus.STOPPED:
                    try:
                        client.stop_session(info["name"])
                        stopped.append(info["name"])
                    except SessionNotFound:
                        pass
        except WahaError as exc:
            log.warning("could not stop the sessions of %s one by one: %s", container.name, exc)
        _wait_stopped_recorded(container, stopped)
    manager.stop_container(container)
    return ngettext(
        "Tenant suspended: %(n)d session stopped, container stopped.",
        "Tenant suspended: %(n)d sessions stopped, container stopped.",
        len(stopped),
    ) % {"n": len(stopped)}, {"stopped_sessions": stopped}


def _wait_stopped_recorded(container: WahaContainer, names: list[str]) -> None:
    """Give the sessions' STOPPED webhooks a moment to arrive before the container goes down."""
    deadline = time.monotonic() + settings.OPS_SUSPEND_EVENTS_WAIT_SECONDS
    with scopes_disabled():
        pending = WahaSession.objects.filter(container=container, remote_name__in=names).exclude(
            status=SessionStatus.STOPPED
        )
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        # Late or lost webhooks: record what WAHA answered (the sessions are stopped).
        pending.update(status=SessionStatus.STOPPED, updated_at=timezone.now())


def _suspend_in_shared(container: WahaContainer, tenant_id: int) -> tuple[str, dict]:
    with scopes_disabled():
        names = list(WahaSession.objects.filter(container=container, tenant_id=tenant_id)
                     .values_list("remote_name", flat=True))
    client = manager.client_for(container, retries=0)
    stopped = []
    for name in names:
        try:
            client.stop_session(name)
            stopped.append(name)
        except SessionNotFound:
            pass
    _wait_stopped_recorded(container, stopped)
    return ngettext(
        "Tenant suspended: %(n)d session stopped in a shared container.",
        "Tenant suspended: %(n)d sessions stopped in a shared container.",
        len(stopped),
    ) % {"n": len(stopped)}, {"stopped": stopped}


def _resume(container: WahaContainer, options: dict) -> tuple[str, dict]:
    """Bring a reactivated tenant's container back, with the sessions that should run."""
    manager.ensure_started(container)
    manager.wait_ready(container)
    resumed = manager.resume_sessions(container)
    return ngettext(
        "Tenant reactivated: container started, %(n)d session resumed.",
        "Tenant reactivated: container started, %(n)d sessions resumed.",
        len(resumed),
    ) % {"n": len(resumed)}, {"resumed": resumed}


def _refuse_suspended(container: WahaContainer) -> None:
    if container.tenant_id is None:
        return  # shared: the health sweep leaves suspended tenants' sessions stopped
    with scopes_disabled():
        active = Tenant.objects.filter(pk=container.tenant_id, is_active=True).exists()
    if not active:
        raise manager.TenantSuspended(_("The tenant is suspended: reactivate it before starting its containers."))


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in [
        Action("start", gettext_lazy("Start"), "change", False, _start),
        Action("stop", gettext_lazy("Stop"), "change", True, _stop),
        Action("restart", gettext_lazy("Restart"), "change", True, _restart),
        Action("delete", gettext_lazy("Delete"), "delete", True, _delete),
        Action("list_sessions", gettext_lazy("List sessions"), "view", False, _list_sessions),
        Action("suspend", gettext_lazy("Stop for the tenant's suspension"), "change", False, _suspend, True),
        Action("resume", gettext_lazy("Start after the tenant's reactivation"), "change", False, _resume, True),
    ]
}
ORPHAN_CLEANUP = "orphans.cleanup"


def enqueue(container: WahaContainer, action: str, actor=None, **options) -> AuditLog:
    """Record the action in the audit log and hand it to the worker (once the transaction commits)."""
    if action not in ACTIONS:
        raise ValueError(f"Unknown container action {action!r}.")
    entry = audit.record(f"container.{action}", actor=actor, target=container, detail={"options": options})
    transaction.on_commit(lambda: run_action.delay(entry.pk))
    return entry


def enqueue_orphan_cleanup(actor=None, volumes: bool = False) -> AuditLog:
    """Record an orphan cleanup asked by an operator and hand it to the worker."""
    entry = audit.record(ORPHAN_CLEANUP, actor=actor, detail={"options": {"volumes": volumes}})
    transaction.on_commit(lambda: run_orphan_cleanup.delay(entry.pk))
    return entry


def _running_entry(entry_id: int) -> AuditLog | None:
    with scopes_disabled():
        entry = AuditLog.objects.filter(pk=entry_id).first()
    if entry is None or entry.is_finished:
        return None  # gone, or a redelivered task whose work is done
    return entry


@shared_task(name="waha.tasks.run_container_action")
def run_action(entry_id: int) -> None:
    """Worker side: do the action of an audit entry and complete the entry."""
    entry = _running_entry(entry_id)
    if entry is None:
        return
    action = ACTIONS.get(entry.action.removeprefix("container."))
    with scopes_disabled():
        container = WahaContainer.objects.filter(pk=entry.target_id or None).first()
    if action is None or container is None:
        audit.fail(entry, _("The container no longer exists.") if action else f"Unknown action {entry.action}.")
        return
    try:
        result, detail = action.run(container, (entry.detail or {}).get("options") or {})
    except (WahaError, RuntimeFailure, manager.WahaManagerError) as exc:
        audit.fail(entry, str(exc) or type(exc).__name__)
        return
    except Exception as exc:
        log.exception("container action %s on %s failed", entry.action, container.name)
        audit.fail(entry, f"{type(exc).__name__}: {exc}")
        raise
    audit.succeed(entry, result, {**(entry.detail or {}), **detail})


@contextlib.contextmanager
def alone(name: str, seconds: int):
    """Yield True when no other copy of this sweep runs (a slow sweep must not overlap the next)."""
    key, token = f"waha:sweep:{name}", uuid.uuid4().hex
    acquired = cache.add(key, token, timeout=seconds)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


@shared_task(name="waha.tasks.run_orphan_cleanup")
def run_orphan_cleanup(entry_id: int) -> None:
    """Worker side: an orphan cleanup asked by an operator, never alongside beat's (waha.tasks.cleanup_orphans)."""
    with alone("orphans", 3000) as first:
        if first:
            _cleanup_orphans(entry_id)
        else:
            audit.fail(entry_id, "Another orphan cleanup is running; try again in a moment.")


def _cleanup_orphans(entry_id: int) -> None:
    """Remove labelled containers without a row, recreate rows' lost containers; complete the entry."""
    entry = _running_entry(entry_id)
    if entry is None:
        return
    volumes = bool(((entry.detail or {}).get("options") or {}).get("volumes"))
    try:
        report = manager.cleanup_orphans(grace=timedelta(minutes=settings.OPS_ORPHAN_GRACE_MINUTES), volumes=volumes)
    except Exception as exc:
        log.exception("orphan cleanup failed")
        audit.fail(entry, f"{type(exc).__name__}: {exc}")
        raise
    summary = _("%(removed)d orphan(s) removed, %(recreated)d lost container(s) recreated.") % {
        "removed": len(report["removed"]), "recreated": len(report["recreated"])
    }
    detail = {**(entry.detail or {}), **report}
    if report["errors"]:
        audit.fail(entry, summary + " " + "; ".join(report["errors"]), detail)
    else:
        audit.succeed(entry, summary, detail)


# --- tenant suspension ------------------------------------------------------------------


def containers_of(tenant: Tenant | int) -> list[WahaContainer]:
    """The tenant's own containers (read in its scope)."""
    with scope(tenant=getattr(tenant, "pk", tenant)):
        return list(WahaContainer.objects.order_by("pk"))


def shared_containers_of(tenant: Tenant | int) -> list[WahaContainer]:
    """Shared containers and external servers that hold sessions of the tenant."""
    with scopes_disabled():
        return list(WahaContainer.objects.filter(tenant=None, sessions__tenant=getattr(tenant, "pk", tenant))
                    .distinct().order_by("pk"))


def on_tenant_suspended(tenant: Tenant, by=None, **kwargs) -> list[AuditLog]:
    """Stop every container of a suspended tenant (and its sessions), and its sessions in shared
    containers, through the worker."""
    own = [enqueue(c, "suspend", actor=by) for c in containers_of(tenant) if c.status != ContainerStatus.CREATING]
    return own + [enqueue(c, "suspend", actor=by, tenant=tenant.pk) for c in shared_containers_of(tenant)]


def on_tenant_reactivated(tenant: Tenant, by=None, **kwargs) -> list[AuditLog]:
    """Start again the containers of a reactivated tenant that hold sessions meant to run."""
    with scope(tenant=tenant.pk):
        wanted = set(WahaSession.objects.filter(should_run=True).values_list("container_id", flat=True))
    own = [enqueue(c, "resume", actor=by) for c in containers_of(tenant) if c.pk in wanted]
    return own + [enqueue(c, "resume", actor=by, tenant=tenant.pk) for c in shared_containers_of(tenant)
                  if c.pk in wanted]


# --- log tail -------------------------------------------------------------------------


def request_logs(container: WahaContainer, tail: int) -> str:
    """Ask the worker for the container's last `tail` log lines; returns the token to fetch them with."""
    token = uuid.uuid4().hex
    read_logs.delay(container.pk, tail, token)
    return token


@shared_task(name="waha.tasks.read_container_logs", expires=60)
def read_logs(container_id: int, tail: int, token: str) -> None:
    """Worker side: read the log tail and leave it in the cache under the token."""
    with scopes_disabled():
        container = WahaContainer.objects.filter(pk=container_id).first()
    text, error = "", ""
    if container is None:
        error = _("The container no longer exists.")
    elif not container.runtime_id:
        error = _("The container was never created by the runtime.")
    else:
        try:
            text = manager.container_logs(container, tail=tail)
        except RuntimeFailure as exc:
            error = str(exc)
    cache.set(LOGS_KEY.format(token=token), {"text": text, "error": error, "at": timezone.now().isoformat()}, 300)


def fetched_logs(token: str, wait: float = 0.0) -> dict | None:
    """The log tail the worker left for a token, waiting up to `wait` seconds; None if not there yet."""
    deadline = time.monotonic() + wait
    while True:
        found = cache.get(LOGS_KEY.format(token=token))
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


# --- utilisation (dashboard and container page) ---------------------------------------


def utilisation(days: int = 7, container: WahaContainer | None = None) -> dict[str, list]:
    """Per hour over `days` days, from the stats samples, aggregated by the database.

    containers: containers sampled; sessions: sessions placed in them (mean over the hour's
    sweeps); cpu: mean CPU % of the containers' limits; memory_gb: memory in use (mean over
    the hour's sweeps). Hours without samples are None (a gap in the chart).
    """
    last_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    hours = [timezone.localtime(last_hour - timedelta(hours=n)) for n in range(days * 24 - 1, -1, -1)]
    with scopes_disabled():
        samples = StatsSample.objects.filter(taken_at__gte=hours[0])
        if container is not None:
            samples = samples.filter(container=container)
        rows = (
            samples.annotate(hour=TruncHour("taken_at"))
            .values("hour")
            .annotate(
                n_containers=Count("container", distinct=True),
                sweeps=Count("taken_at", distinct=True),
                session_sum=Sum("sessions"),
                cpu=Avg("cpu_percent"),
                memory_sum=Sum("memory_bytes"),
            )
            .order_by("hour")
        )
        by_hour = {timezone.localtime(row["hour"]): row for row in rows}
    series: dict[str, list] = {"labels": [], "containers": [], "sessions": [], "cpu": [], "memory_gb": []}
    for hour in hours:
        row = by_hour.get(hour)
        series["labels"].append(hour.strftime("%d/%m %Hh"))
        if row is None:
            for key in ("containers", "sessions", "cpu", "memory_gb"):
                series[key].append(None)
            continue
        sweeps = row["sweeps"] or 1
        series["containers"].append(row["n_containers"])
        series["sessions"].append(round((row["session_sum"] or 0) / sweeps, 1))
        series["cpu"].append(round(row["cpu"] or 0, 1))
        series["memory_gb"].append(round((row["memory_sum"] or 0) / sweeps / 1024**3, 3))
    return series


def cached_utilisation(days: int = 7) -> dict[str, list]:
    """The platform's utilisation, recomputed at most every OPS_CHART_CACHE_SECONDS."""
    key = UTILISATION_KEY.format(days=days)
    found = cache.get(key) if settings.OPS_CHART_CACHE_SECONDS else None
    if found is None:
        found = utilisation(days)
        if settings.OPS_CHART_CACHE_SECONDS:
            cache.set(key, found, settings.OPS_CHART_CACHE_SECONDS)
    return found
