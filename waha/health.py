"""The health sweep: every container probed at once; dead ones started, restarted or recreated,
their sessions resumed with their configs, and what each server can do read again when stale."""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from . import signals
from .alerts import open_alert
from .client import WahaError
from .containers import (
    WahaManagerError,
    capabilities_stale,
    client_for,
    read_capabilities,
    record_capabilities,
    runtime_of,
    spec_for,
    wait_ready,
)
from .models import AlertRule, ContainerStatus, SessionStatus, WahaContainer, WahaSession
from .placement import relocate_stranded
from .runtime import RuntimeFailure
from .sessions import apply_info, resume, wanted_sessions

log = logging.getLogger(__name__)


def concurrently(fn: Callable, items: list) -> list[tuple[Any, Any]]:
    """Run fn over items on a thread pool; returns (item, result or exception) pairs.

    The threads only talk to runtimes and WAHA; the caller writes to the database.
    """
    if not items:
        return []
    workers = max(1, min(settings.WAHA_SWEEP_THREADS, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="waha-sweep") as pool:
        futures = [(item, pool.submit(fn, item)) for item in items]
        results = []
        for item, future in futures:
            try:
                results.append((item, future.result()))
            except Exception as exc:  # noqa: BLE001 - one container's failure must not stop a sweep
                results.append((item, exc))
        return results


@dataclass
class HealthResult:
    healthy: bool
    action: str = ""  # "", "started", "restarted", "recreated"
    error: str = ""
    runtime_id: str = ""
    resumed: list[str] = field(default_factory=list)
    sessions: dict[str, dict] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # wanted sessions WAHA no longer had
    capabilities: dict | None = None
    started_at: datetime | None = None  # when the runtime started it again by itself (a Swarm task)


def _heal(container: WahaContainer, wanted: list[WahaSession]) -> HealthResult:
    """Probe one container; bring it back (start, restart or recreate) and its sessions."""
    runtime = runtime_of(container)
    result = HealthResult(healthy=False, runtime_id=container.runtime_id)
    try:
        status = runtime.status(container.runtime_id) if container.runtime_id else "missing"
        if status == "missing":
            result.runtime_id = runtime.create(spec_for(container))
            result.action = "recreated"
        elif status != "running":
            runtime.start(container.runtime_id)
            result.action = "started"
        else:
            location = runtime.locate(container.runtime_id)
            since = location.since if location else None
            if since and container.started_at and since > container.started_at:
                # Swarm started a new task since WHAGO last saw it (killed, unhealthy, node back):
                # waited for below, like a container the sweep started itself.
                result.action, result.started_at = "rescheduled", since
            else:
                try:
                    client_for(container, retries=0, timeout=(2, 5)).ping()
                except WahaError as exc:
                    stuck = container.down_since and timezone.now() - container.down_since > timedelta(minutes=2)
                    if not stuck:
                        return HealthResult(False, error=str(exc), runtime_id=container.runtime_id)
                    runtime.restart(container.runtime_id)
                    result.action = "restarted"
        if result.action:
            container.runtime_id = result.runtime_id
            wait_ready(container, detect=False)
        if result.action or capabilities_stale(container):
            result.capabilities = read_capabilities(container)
        client = client_for(container)
        sessions = {s["name"]: s for s in client.list_sessions(all=True)}
        result.lost = [s.remote_name for s in wanted if s.remote_name not in sessions]
        result.resumed = resume(container, wanted)
        if result.resumed:
            sessions = {s["name"]: s for s in client.list_sessions(all=True)}
        result.sessions = sessions
        result.healthy = True
    except (WahaError, RuntimeFailure, WahaManagerError) as exc:
        result.error = str(exc)
    return result


def _record(container: WahaContainer, result: HealthResult) -> None:
    with scopes_disabled():
        if result.healthy:
            container.mark_up()
        else:
            container.mark_down(result.error or "unhealthy")
        fields = ["healthy", "last_error", "last_health_at", "down_since", "status", "updated_at"]
        if result.runtime_id and result.runtime_id != container.runtime_id:
            container.runtime_id = result.runtime_id
        fields.append("runtime_id")
        if result.action:
            container.restart_count += 1
            container.started_at = result.started_at or timezone.now()
            fields += ["restart_count", "started_at"]
            log.warning("health sweep %s %s", result.action, container.name)
        container.save(update_fields=fields)
        if result.capabilities:
            record_capabilities(container, result.capabilities)
        _reconcile(container, result)


def _reconcile(container: WahaContainer, result: HealthResult) -> None:
    """Compare what WAHA reports with what WHAGO believes, session by session; where they differ,
    record WAHA's word and tell the chips (the session_status_changed signal, as a webhook would).

    A session WAHA lost entirely is STOPPED (the chip asks for a new scan; connect creates it
    again) and the operators are alerted. While the container is down, connected sessions show
    STARTING: they come back when the container does.
    """
    down_long = (
        not result.healthy and container.down_since is not None
        and timezone.now() - container.down_since >= timedelta(seconds=settings.WAHA_RECONNECTING_SECONDS)
    )
    for session in WahaSession.objects.filter(container=container).select_related("tenant"):
        if result.healthy:
            info = result.sessions.get(session.remote_name)
            reported = (info or {}).get("status") or SessionStatus.STOPPED
            if session.remote_name in result.lost:
                open_alert(
                    f"{container.name}/{session.name}", AlertRule.SESSION_LOST,
                    f"WAHA in {container.name} had lost the session {session.remote_name} of tenant "
                    f"{session.tenant_id} (its data volume?); "
                    + ("it was created again and " if info else "")
                    + "the tenant must scan a new QR code.",
                    container, None,
                )
        elif down_long and session.status in (SessionStatus.WORKING, SessionStatus.SCAN_QR_CODE):
            info, reported = None, SessionStatus.STARTING
        else:
            continue
        if reported == session.status or reported not in SessionStatus.values:
            if info:
                apply_info(session, info)
            continue
        me = info.get("me") if isinstance((info or {}).get("me"), dict) else None
        # One transaction, session row then chip, as a webhook's (the same lock order).
        with transaction.atomic(), scope(tenant=session.tenant):
            apply_info(session, {**(info or {}), "status": reported})
            signals.session_status_changed.send(
                sender=WahaContainer, container=container, tenant=session.tenant, session=session.name,
                waha_session=session, event=None, event_id="", payload={"status": reported}, me=me,
                status=reported,
            )


def health_sweep() -> dict[str, list[str]]:
    """Every running container checked at once; dead ones restarted and their sessions resumed."""
    with scopes_disabled():
        containers = list(WahaContainer.objects.filter(status__in=[ContainerStatus.RUNNING, ContainerStatus.FAILED]))
        moved = relocate_stranded(containers)  # swarm: off drained or lost nodes first
        wanted = wanted_sessions(containers)
        report: dict[str, list[str]] = {"healthy": [], "unhealthy": [], "repaired": [], "moved": moved}
        for container, result in concurrently(lambda c: _heal(c, wanted.get(c.pk, [])), containers):
            if isinstance(result, Exception):
                result = HealthResult(False, error=repr(result))
            _record(container, result)
            report["healthy" if result.healthy else "unhealthy"].append(container.name)
            if result.action:
                report["repaired"].append(container.name)
        return report
