"""Operations on WAHA containers and their sessions: placement, lifecycle, health, stats,
alerts and orphans. Celery tasks (waha.tasks) are thin wrappers around these functions;
the chips app calls the session functions (create_session, qr, send_text...).

Everything here runs outside a request, so it opens `scopes_disabled()` itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from whago.models import Tenant

from .client import SessionAlreadyExists, SessionNotFound, WahaClient, WahaError
from .models import (
    AlertRule,
    AlertState,
    ContainerAlert,
    ContainerStatus,
    Engine,
    SessionStatus,
    StatsSample,
    WahaContainer,
    WahaSession,
)
from .runtime import ContainerInfo, ContainerSpec, RuntimeFailure, Stats, get_runtime

log = logging.getLogger(__name__)

DEFAULT_EVENTS = ["session.status", "message", "message.ack"]
SAMPLES_KEPT = timedelta(days=8)
ORPHAN_GRACE = timedelta(minutes=10)
# A container is created inside its tenant's transaction: no alert about that instant.
ALERT_ORPHAN_GRACE = timedelta(minutes=2)


class WahaManagerError(Exception):
    """A container or session operation could not be done."""


class PortRangeExhausted(WahaManagerError):
    """Every port of WAHA_PORT_RANGE is reserved: no container can be created."""


class ContainerNotReady(WahaManagerError):
    """The container did not answer its API in time."""


class TenantSuspended(WahaManagerError):
    """The tenant is suspended (whago.services.suspend_tenant): nothing is started for it."""


# --- naming, labels, environment ---------------------------------------------------


def port_range() -> range:
    """The ports of settings.WAHA_PORT_RANGE ("3100-3199")."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", settings.WAHA_PORT_RANGE)
    if not match or int(match[1]) > int(match[2]):
        raise WahaManagerError(f"WAHA_PORT_RANGE must look like 3100-3199, not {settings.WAHA_PORT_RANGE!r}.")
    return range(int(match[1]), int(match[2]) + 1)


def instance_slug() -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", settings.WHAGO_INSTANCE)[:40] or "default"


def labels_for(container: WahaContainer) -> dict[str, str]:
    return {
        "whago.service": "waha",
        "whago.instance": settings.WHAGO_INSTANCE,
        "whago.tenant": str(container.tenant_id),
        "whago.container": str(container.pk),
    }


def env_for(container: WahaContainer) -> dict[str, str]:
    """The environment of a WAHA container, with WAHA's own variable names."""
    loopback_only = container.runtime == "local" or settings.WAHA_NETWORK_MODE == "host"
    env = {
        "WHATSAPP_API_PORT": str(container.port),
        # With host networking (and locally) listen on loopback only; a published port
        # is bound to 127.0.0.1 on the host by Docker, so inside it listens on all.
        "WHATSAPP_API_HOSTNAME": "127.0.0.1" if loopback_only else "0.0.0.0",  # noqa: S104
        "WAHA_API_KEY": container.api_key,
        "WHATSAPP_API_KEY": container.api_key,
        "WHATSAPP_DEFAULT_ENGINE": settings.WAHA_WHATSAPP_ENGINE,
        "WAHA_PRINT_QR": "False",
        # Sessions that were running come back after a restart (the data is in the volume).
        "WHATSAPP_RESTART_ALL_SESSIONS": "True",
        "WAHA_WORKER_RESTART_SESSIONS": "True",
        "WAHA_SIM_ENGINE": container.engine,
        "TZ": settings.TIME_ZONE,
    }
    if container.runtime != "local":
        env["WAHA_LOCAL_STORE_BASE_DIR"] = settings.WAHA_DATA_DIR
    # No global WHATSAPP_HOOK_URL: each session carries its webhook (session_config), so
    # an event is delivered once, not once per webhook.
    return env


def spec_for(container: WahaContainer) -> ContainerSpec:
    return ContainerSpec(
        name=container.name,
        port=container.port,
        env=env_for(container),
        labels=labels_for(container),
        image=container.image,
        engine=container.engine,
        api_key=container.api_key,
        memory_limit=settings.WAHA_MEMORY_LIMIT,
        cpu_limit=settings.WAHA_CPU_LIMIT,
        data_dir=settings.WAHA_DATA_DIR,
    )


def client_for(container: WahaContainer, **kwargs) -> WahaClient:
    """The HTTP client of a container's WAHA API."""
    return WahaClient.for_container(container, **kwargs)


def runtime_of(container: WahaContainer):
    return get_runtime(container.runtime)


# --- placement ---------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    """Nothing else on this host listens on the port (another program, another instance)."""
    if settings.WAHA_NETWORK_MODE == "network" and settings.WAHA_RUNTIME == "docker":
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _reserve(tenant: Tenant, engine: str) -> WahaContainer:
    """Insert a container row on a free port (the unique constraint arbitrates races)."""
    taken = set(WahaContainer.objects.values_list("port", flat=True))
    for port in port_range():
        if port in taken or not _port_is_free(port):
            continue
        try:
            with transaction.atomic():
                return WahaContainer.objects.create(
                    tenant=tenant,
                    name=f"whago-{instance_slug()}-waha-t{tenant.pk}-{secrets.token_hex(3)}",
                    runtime=settings.WAHA_RUNTIME,
                    port=port,
                    image=settings.WAHA_IMAGE if settings.WAHA_RUNTIME == "docker" else "waha.simulator",
                    engine=engine,
                    capacity=settings.WAHA_SESSIONS_PER_CONTAINER if engine == Engine.PLUS else 1,
                )
        except IntegrityError:
            continue  # another transaction took this port a moment ago
    raise PortRangeExhausted(
        f"All ports of WAHA_PORT_RANGE {settings.WAHA_PORT_RANGE} are in use: "
        "widen the range or free containers before creating another."
    )


def _create_container(tenant: Tenant) -> WahaContainer:
    """Reserve a port and create the runtime container; call inside the tenant's lock.

    If the runtime fails, the exception rolls the row back: nothing is left half-created.
    If this process dies after the runtime created it but before the commit, the labelled
    container has no row and cleanup_orphans removes it.
    """
    engine = settings.WAHA_ENGINE if settings.WAHA_ENGINE in Engine.values else Engine.PLUS
    container = _reserve(tenant, engine)
    container.runtime_id = runtime_of(container).create(spec_for(container))
    container.status = ContainerStatus.RUNNING
    container.started_at = timezone.now()
    container.save(update_fields=["runtime_id", "status", "started_at", "updated_at"])
    log.info("created WAHA container %s on port %s for tenant %s", container.name, container.port, tenant.pk)
    return container


def _container_with_room(tenant: Tenant) -> WahaContainer | None:
    return (
        WahaContainer.objects.filter(tenant=tenant)
        .exclude(status=ContainerStatus.FAILED)
        .annotate(used=Count("sessions"))
        .filter(used__lt=F("capacity"))
        .order_by("created_at")
        .first()
    )


def _lock_tenant(tenant: Tenant | int) -> Tenant:
    if settings.WAHA_PLACEMENT != "per_tenant":
        raise WahaManagerError(f"WAHA_PLACEMENT {settings.WAHA_PLACEMENT!r} is not supported: use per_tenant.")
    locked = Tenant.objects.select_for_update(no_key=True).get(pk=getattr(tenant, "pk", tenant))
    if not locked.is_active:
        raise TenantSuspended(f"Tenant {locked.pk} is suspended: its containers and sessions stay stopped.")
    return locked


def ensure_container(tenant: Tenant | int, wait: bool = True) -> WahaContainer:
    """The tenant's container with room for one more session, created when none has room.

    Idempotent under concurrency: the tenant row is locked while choosing or creating,
    so simultaneous calls for one tenant get the same container.
    """
    with scopes_disabled():
        with transaction.atomic():
            locked = _lock_tenant(tenant)
            container = _container_with_room(locked) or _create_container(locked)
        _ensure_started(container)
        if wait:
            wait_ready(container)
        return container


def _ensure_started(container: WahaContainer) -> None:
    """Start the container if it is not running; recreate it if the runtime lost it."""
    runtime = runtime_of(container)
    status = runtime.status(container.runtime_id) if container.runtime_id else "missing"
    if status == "running" and container.status == ContainerStatus.RUNNING:
        return
    if status == "missing":
        container.runtime_id = runtime.create(spec_for(container))
    elif status != "running":
        runtime.start(container.runtime_id)
    container.status, container.down_since, container.started_at = ContainerStatus.RUNNING, None, timezone.now()
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(
            runtime_id=container.runtime_id, status=ContainerStatus.RUNNING, down_since=None,
            started_at=container.started_at,
        )


def wait_ready(container: WahaContainer, timeout: float | None = None) -> None:
    """Block until the container answers its API with its key."""
    deadline = time.monotonic() + (timeout if timeout is not None else settings.WAHA_READY_TIMEOUT)
    client = client_for(container, retries=0)
    error: Exception | None = None
    while True:
        try:
            client.ping()
            return
        except WahaError as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise ContainerNotReady(f"{container.name} did not answer in time: {error}")
        time.sleep(0.2)


# --- container lifecycle ---------------------------------------------------------------


def start_container(container: WahaContainer, wait: bool = True) -> None:
    runtime_of(container).start(container.runtime_id)
    now = timezone.now()
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(
            status=ContainerStatus.RUNNING, down_since=None, started_at=now
        )
    container.status, container.down_since, container.started_at = ContainerStatus.RUNNING, None, now
    if wait:
        wait_ready(container)


def stop_container(container: WahaContainer) -> None:
    """Stop on purpose: the health sweep leaves it stopped (the 1-hour alert still applies)."""
    runtime_of(container).stop(container.runtime_id)
    now = timezone.now()
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(
            status=ContainerStatus.STOPPED, healthy=False, down_since=now
        )
    container.status, container.healthy, container.down_since = ContainerStatus.STOPPED, False, now


def restart_container(container: WahaContainer, wait: bool = True) -> None:
    """Restart the container; its running sessions come back from its data."""
    runtime_of(container).restart(container.runtime_id)
    now = timezone.now()
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(status=ContainerStatus.RUNNING, started_at=now)
    container.status, container.started_at = ContainerStatus.RUNNING, now
    if wait:
        wait_ready(container)
        resume_sessions(container)


def delete_container(container: WahaContainer, volume: bool = False) -> None:
    """Remove the container and its row (its sessions with it); the data volume only if asked."""
    runtime = runtime_of(container)
    if container.runtime_id:
        runtime.remove(container.runtime_id, volume=volume)
    elif volume:
        runtime.remove_volume_of(container.name)
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).delete()
    log.info("deleted WAHA container %s (volume %s)", container.name, "removed" if volume else "kept")


def container_logs(container: WahaContainer, tail: int = 200) -> str:
    return runtime_of(container).logs(container.runtime_id, tail=tail)


def container_stats(container: WahaContainer) -> Stats:
    return runtime_of(container).stats(container.runtime_id)


def list_sessions(container: WahaContainer) -> list[dict]:
    """Every session WAHA has in the container (including STOPPED ones)."""
    return client_for(container).list_sessions(all=True)


def check_health(container: WahaContainer) -> bool:
    """Probe one container now (see health_sweep for the repairs) and record the result."""
    result = _heal(container, _wanted_sessions([container]).get(container.pk, []), repair=False)
    _record_health(container, result)
    return result.healthy


# --- sessions ------------------------------------------------------------------------


def session_config(
    container: WahaContainer,
    name: str,
    proxy: dict | None = None,
    metadata: dict | None = None,
    events: Iterable[str] = DEFAULT_EVENTS,
) -> dict:
    """WAHA's session config: our webhook (signed with the container's key), proxy, metadata."""
    config: dict[str, Any] = {
        "webhooks": [
            {
                "url": container.webhook_url,
                "events": list(events),
                "hmac": {"key": container.webhook_key},
                "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 10},
            }
        ],
        "metadata": {"whago.session": name, "whago.tenant": str(container.tenant_id), **(metadata or {})},
    }
    if proxy:
        config["proxy"] = {k: v for k, v in proxy.items() if k in ("server", "username", "password") and v}
    return config


def create_session(
    tenant: Tenant | int,
    name: str,
    proxy: dict | None = None,
    metadata: dict | None = None,
    start: bool = True,
    events: Iterable[str] = DEFAULT_EVENTS,
) -> WahaSession:
    """Place a session in the tenant's container (creating one if needed) and create it in WAHA.

    proxy: {"server": "host:port", "username": ..., "password": ...} or None.
    Idempotent: calling it again for the same name updates the config (safe to retry).
    """
    with scopes_disabled():
        with transaction.atomic():
            locked = _lock_tenant(tenant)
            session = WahaSession.objects.filter(tenant=locked, name=name).select_related("container").first()
            if session is None:
                container = _container_with_room(locked) or _create_container(locked)
                session = WahaSession.objects.create(
                    tenant=locked,
                    container=container,
                    name=name,
                    remote_name=name if container.engine == Engine.PLUS else "default",
                    should_run=start,
                )
                session.container = container
        container = session.container
        _ensure_started(container)
        wait_ready(container)
        config = session_config(container, name, proxy=proxy, metadata=metadata, events=events)
        client = client_for(container)
        try:
            info = client.create_session(session.remote_name, config, start=start)
        except SessionAlreadyExists:
            info = client.update_session(session.remote_name, config)
            if start:
                info = client.start_session(session.remote_name)
        _apply_info(session, info)
        return session


def get_session(tenant: Tenant | int, name: str) -> WahaSession:
    """The session named `name` of a tenant (raises WahaSession.DoesNotExist)."""
    with scopes_disabled():
        return WahaSession.objects.select_related("container").get(tenant=getattr(tenant, "pk", tenant), name=name)


def _apply_info(session: WahaSession, info: dict | None) -> None:
    """Record what WAHA says about a session (status, account)."""
    if not isinstance(info, dict):
        return
    changes: dict[str, Any] = {}
    if info.get("status") in SessionStatus.values:
        changes["status"] = info["status"]
    me = info.get("me")
    if isinstance(me, dict) and me.get("id"):
        changes["me_id"] = str(me["id"])[:64]
        changes["me_push_name"] = str(me.get("pushName") or "")[:128]
    if changes:
        for key, value in changes.items():
            setattr(session, key, value)
        with scopes_disabled():
            WahaSession.objects.filter(pk=session.pk).update(**changes, updated_at=timezone.now())


def _session_call(session: WahaSession, method: str, *args, **kwargs):
    return getattr(client_for(session.container), method)(session.remote_name, *args, **kwargs)


def session_info(session: WahaSession) -> dict:
    info = _session_call(session, "get_session")
    _apply_info(session, info)
    return info


def start_session(session: WahaSession) -> dict:
    info = _session_call(session, "start_session")
    _set_should_run(session, True)
    _apply_info(session, info)
    return info


def stop_session(session: WahaSession) -> dict:
    info = _session_call(session, "stop_session")
    _set_should_run(session, False)
    _apply_info(session, info)
    return info


def restart_session(session: WahaSession) -> dict:
    info = _session_call(session, "restart_session")
    _set_should_run(session, True)
    _apply_info(session, info)
    return info


def logout_session(session: WahaSession) -> dict:
    """Forget the WhatsApp account of the session (a new QR scan is needed)."""
    info = _session_call(session, "logout_session")
    with scopes_disabled():
        WahaSession.objects.filter(pk=session.pk).update(me_id="", me_push_name="")
    session.me_id = session.me_push_name = ""
    _apply_info(session, info)
    return info


def delete_session(session: WahaSession) -> None:
    """Delete the session in WAHA and free its seat in the container."""
    with contextlib.suppress(SessionNotFound):
        _session_call(session, "delete_session")
    with scopes_disabled(), transaction.atomic():
        # Lock the session row before the delete cascades to rows pointing at it (a chip's
        # link is set to NULL): the same order as a webhook's transaction, which updates the
        # session and then its chip — the other order deadlocks with it.
        locked = WahaSession.objects.select_for_update().filter(pk=session.pk).first()
        if locked is not None:
            locked.delete()


def _set_should_run(session: WahaSession, value: bool) -> None:
    if session.should_run != value:
        session.should_run = value
        with scopes_disabled():
            WahaSession.objects.filter(pk=session.pk).update(should_run=value)


def qr(session: WahaSession, format: str = "image") -> bytes | str:  # noqa: A002 - WAHA's parameter name
    """The pairing QR: PNG bytes (format="image") or its raw text value (format="raw")."""
    return _session_call(session, "qr", format=format)


def request_code(session: WahaSession, phone_number: str) -> str:
    """A pairing code for a phone number (pairing without scanning the QR)."""
    return _session_call(session, "request_code", phone_number).get("code", "")


def send_text(session: WahaSession, chat_id: str, text: str) -> dict:
    """Send a text; returns WAHA's message (its id: waha.client.message_id(result))."""
    return client_for(session.container).send_text(session.remote_name, chat_id, text)


def send_image(session: WahaSession, chat_id: str, file: dict, caption: str | None = None) -> dict:
    return client_for(session.container).send_image(session.remote_name, chat_id, file, caption)


def send_file(session: WahaSession, chat_id: str, file: dict, caption: str | None = None) -> dict:
    return client_for(session.container).send_file(session.remote_name, chat_id, file, caption)


def resume_sessions(container: WahaContainer) -> list[str]:
    """Start the sessions that should run but do not (after a restart); returns their names."""
    wanted = _wanted_sessions([container]).get(container.pk, [])
    return _resume(container, wanted)


def _wanted_sessions(containers: Iterable[WahaContainer]) -> dict[int, list[str]]:
    wanted: dict[int, list[str]] = {}
    with scopes_disabled():
        rows = WahaSession.objects.filter(container__in=list(containers), should_run=True)
        for container_id, remote_name in rows.values_list("container_id", "remote_name"):
            wanted.setdefault(container_id, []).append(remote_name)
    return wanted


def _resume(container: WahaContainer, wanted: list[str]) -> list[str]:
    if not wanted:
        return []
    client = client_for(container)
    present = {s["name"]: s.get("status") for s in client.list_sessions(all=True)}
    started = []
    for name in wanted:
        if name not in present:
            log.warning("session %s is missing from %s (data lost?)", name, container.name)
        elif present[name] in ("STOPPED", "FAILED"):
            client.start_session(name)
            started.append(name)
    return started


# --- sweeps -------------------------------------------------------------------------


def _concurrently(fn: Callable, items: list) -> list[tuple[Any, Any]]:
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


def _heal(container: WahaContainer, wanted: list[str], repair: bool = True) -> HealthResult:
    """Probe one container; when repair, bring it back (start, restart or recreate) and its sessions."""
    runtime = runtime_of(container)
    result = HealthResult(healthy=False, runtime_id=container.runtime_id)
    try:
        status = runtime.status(container.runtime_id) if container.runtime_id else "missing"
        if status == "missing":
            if not repair:
                return HealthResult(False, error="the runtime has no such container")
            result.runtime_id = runtime.create(spec_for(container))
            result.action = "recreated"
        elif status != "running":
            if not repair:
                return HealthResult(False, error=f"container is {status}")
            runtime.start(container.runtime_id)
            result.action = "started"
        else:
            try:
                client_for(container, retries=0, timeout=(2, 5)).ping()
            except WahaError as exc:
                stuck = container.down_since and timezone.now() - container.down_since > timedelta(minutes=2)
                if not (repair and stuck):
                    return HealthResult(False, error=str(exc), runtime_id=container.runtime_id)
                runtime.restart(container.runtime_id)
                result.action = "restarted"
        if result.action:
            container.runtime_id = result.runtime_id
            wait_ready(container)
        client = client_for(container)
        sessions = {s["name"]: s for s in client.list_sessions(all=True)}
        if repair:
            result.resumed = _resume(container, wanted)
            if result.resumed:
                sessions = {s["name"]: s for s in client.list_sessions(all=True)}
        result.sessions = sessions
        result.healthy = True
    except (WahaError, RuntimeFailure, WahaManagerError) as exc:
        result.error = str(exc)
    return result


def _record_health(container: WahaContainer, result: HealthResult) -> None:
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
            container.started_at = timezone.now()
            fields += ["restart_count", "started_at"]
            log.warning("health sweep %s %s", result.action, container.name)
        container.save(update_fields=fields)
        for remote_name, info in result.sessions.items():
            session = WahaSession.objects.filter(container=container, remote_name=remote_name).first()
            if session:
                _apply_info(session, info)


def health_sweep() -> dict[str, list[str]]:
    """Every running container checked at once; dead ones restarted and their sessions resumed."""
    with scopes_disabled():
        containers = list(WahaContainer.objects.filter(status__in=[ContainerStatus.RUNNING, ContainerStatus.FAILED]))
        wanted = _wanted_sessions(containers)
        report: dict[str, list[str]] = {"healthy": [], "unhealthy": [], "repaired": []}
        for container, result in _concurrently(lambda c: _heal(c, wanted.get(c.pk, [])), containers):
            if isinstance(result, Exception):
                result = HealthResult(False, error=repr(result))
            _record_health(container, result)
            report["healthy" if result.healthy else "unhealthy"].append(container.name)
            if result.action:
                report["repaired"].append(container.name)
        return report


def stats_sweep() -> dict[str, int]:
    """CPU and memory of every running container, read at once and stored as samples."""
    with scopes_disabled():
        containers = list(WahaContainer.objects.filter(status=ContainerStatus.RUNNING).exclude(runtime_id=""))
        now = timezone.now()
        placed = dict(
            WahaSession.objects.filter(container__in=containers)
            .values_list("container_id")
            .annotate(n=Count("pk"))
        )
        samples, failed = [], 0
        cpus = settings.WAHA_CPU_LIMIT or os.cpu_count() or 1
        for container, stats in _concurrently(container_stats, containers):
            if isinstance(stats, Exception):
                failed += 1
                log.info("no stats for %s: %s", container.name, stats)
                continue
            # CPU as a share of the container's CPU limit: 100 % = the whole limit in use.
            cpu = round(min(stats.cpu_percent / cpus, 100.0 * 64), 2)
            memory_percent = round(stats.memory_percent, 2)
            samples.append(
                StatsSample(
                    container=container,
                    cpu_percent=cpu,
                    memory_bytes=stats.memory_bytes,
                    memory_percent=memory_percent,
                    sessions=placed.get(container.pk, 0),
                    taken_at=now,
                )
            )
            WahaContainer.objects.filter(pk=container.pk).update(
                last_cpu_percent=cpu,
                last_memory_bytes=stats.memory_bytes,
                last_memory_percent=memory_percent,
                last_stats_at=now,
            )
        StatsSample.objects.bulk_create(samples)
        StatsSample.objects.filter(taken_at__lt=now - SAMPLES_KEPT).delete()
        return {"sampled": len(samples), "failed": failed}


# --- alerts -------------------------------------------------------------------------


def _open_alert(subject: str, rule: str, message: str, container: WahaContainer | None, value: float | None):
    existing = ContainerAlert.objects.exclude(state=AlertState.RESOLVED).filter(subject=subject, rule=rule).first()
    if existing:
        if existing.value != value or existing.message != message:
            ContainerAlert.objects.filter(pk=existing.pk).update(value=value, message=message)
        return None
    try:
        with transaction.atomic():
            alert = ContainerAlert.objects.create(
                subject=subject, rule=rule, message=message, container=container, value=value
            )
    except IntegrityError:
        return None  # opened by a concurrent sweep
    _email_operators(alert)
    return alert


def alert_recipients() -> list[str]:
    """Who is e-mailed new alerts: OPERATOR_EMAILS, else every active staff user allowed to see them."""
    if settings.OPERATOR_EMAILS:
        return list(settings.OPERATOR_EMAILS)
    perm = {"codename": "view_containeralert", "content_type__app_label": "waha"}
    allowed = (
        Q(is_superuser=True)
        | Q(**{f"user_permissions__{key}": value for key, value in perm.items()})
        | Q(**{f"groups__permissions__{key}": value for key, value in perm.items()})
    )
    users = get_user_model().objects.filter(is_active=True, is_staff=True).filter(allowed).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def _email_operators(alert: ContainerAlert) -> None:
    """One e-mail per new alert (a mail server failure must not stop the sweep)."""
    recipients = alert_recipients()
    if not recipients:
        return
    link = settings.SITE_URL + reverse("admin:waha_containeralert_change", args=[alert.pk])
    try:
        send_mail(f"[WHAGO] {alert}", f"{alert.message}\n\n{link}\n", settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # noqa: BLE001 - SMTP errors of every kind
        log.warning("could not e-mail alert %s to operators: %s", alert.pk, exc)


def _resolve_alerts(subject: str, rules: Iterable[str]) -> int:
    return (
        ContainerAlert.objects.exclude(state=AlertState.RESOLVED)
        .filter(subject=subject, rule__in=list(rules))
        .update(state=AlertState.RESOLVED, resolved_at=timezone.now())
    )


def alert_sweep(orphans: list[tuple[str, ContainerInfo]] | None = None) -> dict[str, int]:
    """Open or resolve alerts: down > WAHA_ALERT_STOPPED_MINUTES, CPU and memory above limits, orphans."""
    now = timezone.now()
    opened = 0
    stale_stats = timedelta(minutes=5)
    with scopes_disabled():
        for c in WahaContainer.objects.select_related("tenant"):
            # A suspended tenant's containers are stopped on purpose: no "stopped" alert.
            down_for = now - c.down_since if c.down_since and c.tenant.is_active else None
            checks = [
                (
                    AlertRule.STOPPED,
                    down_for is not None and down_for > timedelta(minutes=settings.WAHA_ALERT_STOPPED_MINUTES),
                    f"{c.name} has been down since {c.down_since:%Y-%m-%d %H:%M} ({c.last_error or c.status})."
                    if c.down_since
                    else "",
                    down_for.total_seconds() / 60 if down_for else None,
                ),
            ]
            fresh = c.last_stats_at and now - c.last_stats_at < stale_stats and c.status == ContainerStatus.RUNNING
            checks.append(
                (
                    AlertRule.CPU,
                    bool(fresh and (c.last_cpu_percent or 0) > settings.WAHA_ALERT_CPU_PERCENT),
                    f"{c.name} uses {c.last_cpu_percent} % of its CPU limit.",
                    c.last_cpu_percent,
                )
            )
            checks.append(
                (
                    AlertRule.MEMORY,
                    bool(fresh and (c.last_memory_percent or 0) > settings.WAHA_ALERT_MEMORY_PERCENT),
                    f"{c.name} uses {c.last_memory_percent} % of its memory limit.",
                    c.last_memory_percent,
                )
            )
            for rule, firing, message, value in checks:
                if firing:
                    opened += bool(_open_alert(c.name, rule, message, c, value))
                else:
                    _resolve_alerts(c.name, [rule])
        if orphans is None:
            orphans = find_orphans(grace=ALERT_ORPHAN_GRACE)
        orphan_names = {info.name for _, info in orphans}
        for runtime_name, info in orphans:
            opened += bool(
                _open_alert(
                    info.name,
                    AlertRule.ORPHAN,
                    f"{runtime_name} container {info.name} ({info.status}) is labelled for this WHAGO but has no row.",
                    None,
                    None,
                )
            )
        for alert in ContainerAlert.objects.filter(rule=AlertRule.ORPHAN).exclude(state=AlertState.RESOLVED):
            if alert.subject not in orphan_names:
                _resolve_alerts(alert.subject, [AlertRule.ORPHAN])
    return {"opened": opened}


# --- orphans ------------------------------------------------------------------------


def _runtimes_in_use() -> list[str]:
    with scopes_disabled():
        names = set(WahaContainer.objects.values_list("runtime", flat=True).distinct())
    return sorted(names | {settings.WAHA_RUNTIME})


def find_orphans(grace: timedelta = ORPHAN_GRACE) -> list[tuple[str, ContainerInfo]]:
    """Runtime containers labelled for this instance with no row (older than `grace`)."""
    with scopes_disabled():
        known = set(WahaContainer.objects.values_list("name", flat=True))
    cutoff = timezone.now() - grace
    found = []
    for runtime_name in _runtimes_in_use():
        try:
            listed = get_runtime(runtime_name).list()
        except RuntimeFailure as exc:
            log.warning("cannot list %s containers: %s", runtime_name, exc)
            continue
        for info in listed:
            if info.labels.get("whago.instance") != settings.WHAGO_INSTANCE or info.name in known:
                continue
            # A container being created right now has no committed row yet: give it time.
            if info.created_at and info.created_at > cutoff:
                continue
            found.append((runtime_name, info))
    return found


def cleanup_orphans(grace: timedelta = ORPHAN_GRACE, volumes: bool = False) -> dict[str, list[str]]:
    """Both ways: remove labelled containers with no row; recreate rows whose container is gone.

    Data volumes of removed orphans are kept unless `volumes` (data is never lost silently).
    """
    report: dict[str, list[str]] = {"removed": [], "recreated": [], "errors": []}
    for runtime_name, info in find_orphans(grace):
        try:
            get_runtime(runtime_name).remove(info.runtime_id, volume=volumes)
            report["removed"].append(info.name)
            log.warning("removed orphan %s container %s", runtime_name, info.name)
        except RuntimeFailure as exc:
            report["errors"].append(f"{info.name}: {exc}")
    with scopes_disabled():
        for container in WahaContainer.objects.exclude(status=ContainerStatus.CREATING):
            try:
                runtime = runtime_of(container)
                if container.runtime_id and runtime.status(container.runtime_id) != "missing":
                    continue
                container.runtime_id = runtime.create(spec_for(container))
                if container.status == ContainerStatus.STOPPED:
                    runtime.stop(container.runtime_id)
                container.save(update_fields=["runtime_id", "updated_at"])
                report["recreated"].append(container.name)
                log.warning("recreated the missing container of %s", container.name)
            except RuntimeFailure as exc:
                report["errors"].append(f"{container.name}: {exc}")
    return report
