"""WAHA containers: how they are named, configured and reached, their lifecycle on a runtime,
and what each can do (read from the server itself, never assumed from settings).

A container may be shared by several tenants (a shared one belongs to none), so the functions
that read or write one by its id open `scopes_disabled()` (listed in whago/scopes_allowlist.py);
a tenant's own containers are read in its scope (resize_containers).
"""
from __future__ import annotations

import logging
import re
import time

from django.conf import settings
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from billing import limits as plan_limits

from .client import WahaClient, WahaError
from .models import ContainerStatus, Engine, WahaContainer
from .runtime import ContainerSpec, Runtime, Stats, get_runtime

log = logging.getLogger(__name__)


class WahaManagerError(Exception):
    """A container or session operation could not be done."""


class ContainerNotReady(WahaManagerError):
    """The container did not answer its API in time."""


# --- naming, labels, environment ---------------------------------------------------


def instance_slug() -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", settings.WHAGO_INSTANCE)[:40] or "default"


def labels_for(container: WahaContainer) -> dict[str, str]:
    return {
        "whago.service": "waha",
        "whago.instance": settings.WHAGO_INSTANCE,
        "whago.tenant": str(container.tenant_id or "shared"),
        "whago.container": str(container.pk),
    }


def env_for(container: WahaContainer) -> dict[str, str]:
    """The environment of a WAHA container, with WAHA's own variable names."""
    loopback_only = container.runtime == "local" or settings.WAHA_NETWORK_MODE == "host"
    if container.runtime == "swarm" and settings.WAHA_NETWORK_MODE == "host":
        # On a node's host network WHAGO reaches it at the node's address (loopback on one node).
        loopback_only = settings.WAHA_SWARM_NODE_ADDRESS == "127.0.0.1"
    env = {
        "WHATSAPP_API_PORT": str(container.port),
        # With host networking (and locally) listen on loopback only; a published port
        # is bound to 127.0.0.1 on the host by Docker, so inside it listens on all.
        "WHATSAPP_API_HOSTNAME": "127.0.0.1" if loopback_only else "0.0.0.0",  # noqa: S104
        # The base of the media URLs WAHA puts in webhooks: where WHAGO reaches it, the only origin
        # chips/inbound_media.py downloads from.
        "WAHA_BASE_URL": container.base_url,
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
    if settings.WAHA_SIM_PROFILE:
        env["WAHA_SIM_PROFILE"] = settings.WAHA_SIM_PROFILE
    if container.runtime != "local":
        env["WAHA_LOCAL_STORE_BASE_DIR"] = settings.WAHA_DATA_DIR
    if settings.WAHA_SESSIONS_POSTGRESQL_URL and container.runtime != "local":
        # WAHA Plus keeps sessions in PostgreSQL (a database per session): they survive the container
        # moving to another node. Servers sharing the database need a worker id each.
        env["WHATSAPP_SESSIONS_POSTGRESQL_URL"] = settings.WAHA_SESSIONS_POSTGRESQL_URL
        env["WAHA_WORKER_ID"] = container.name
    # No global WHATSAPP_HOOK_URL: each session carries its webhook (sessions.session_config),
    # so an event is delivered once, not once per webhook.
    return env


def limits_of(container: WahaContainer) -> tuple[str, float]:
    """(memory in docker syntax, CPUs): the container's plan, else WAHA_MEMORY_LIMIT and WAHA_CPU_LIMIT."""
    memory = f"{container.memory_mb}m" if container.memory_mb else settings.WAHA_MEMORY_LIMIT
    return memory, float(container.cpus) if container.cpus else settings.WAHA_CPU_LIMIT


def spec_for(container: WahaContainer) -> ContainerSpec:
    memory, cpus = limits_of(container)
    return ContainerSpec(
        name=container.name,
        port=container.port,
        env=env_for(container),
        labels=labels_for(container),
        image=container.image,
        engine=container.engine,
        api_key=container.api_key,
        memory_limit=memory,
        cpu_limit=cpus,
        data_dir=settings.WAHA_DATA_DIR,
        node=container.node,
    )


def client_for(container: WahaContainer, **kwargs) -> WahaClient:
    """The HTTP client of a container's WAHA API."""
    return WahaClient.for_container(container, **kwargs)


def runtime_of(container: WahaContainer) -> Runtime:
    return get_runtime(container.runtime)


# --- what a server can do ------------------------------------------------------------


def read_capabilities(container: WahaContainer) -> dict:
    """Ask the server its version, tier and engine, and whether it enforces its API key (HTTP only)."""
    client = client_for(container, retries=0, timeout=(3.05, 10))
    info = client.version() or {}
    tier = Engine.CORE if str(info.get("tier") or "").upper() == "CORE" else Engine.PLUS
    return {
        "version": str(info.get("version") or "")[:32],
        "whatsapp_engine": str(info.get("engine") or "").upper()[:16],
        "engine": tier,
        "key_enforced": client.key_enforced(),
        "capabilities_at": timezone.now(),
    }


def record_capabilities(container: WahaContainer, capabilities: dict) -> WahaContainer:
    """Store what read_capabilities found. The tier decides the rest (WahaContainer.is_core and
    the properties after it); a key not enforced opens an alert (waha.alerts.alert_sweep)."""
    changes = dict(capabilities)
    if changes.get("engine") == Engine.CORE:
        changes["capacity"] = 1
    for key, value in changes.items():
        setattr(container, key, value)
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(**changes)
    if changes.get("key_enforced") is False:
        log.warning("WAHA %s (%s) does not enforce its API key", container.name, container.base_url)
    return container


def detect_capabilities(container: WahaContainer) -> WahaContainer:
    """Read what the server can do and record it."""
    return record_capabilities(container, read_capabilities(container))


def capabilities_stale(container: WahaContainer) -> bool:
    """Never read, read before the container last started, or (external servers, which their
    operators may upgrade) read longer ago than WAHA_CAPABILITIES_MAX_AGE seconds."""
    if container.capabilities_at is None:
        return True
    if container.started_at and container.started_at > container.capabilities_at:
        return True
    age = (timezone.now() - container.capabilities_at).total_seconds()
    return container.is_external and age > settings.WAHA_CAPABILITIES_MAX_AGE


# --- lifecycle ---------------------------------------------------------------------


def ensure_started(container: WahaContainer) -> None:
    """Start the container if it is not running; recreate it if the runtime lost it.
    (An external server is its operator's to run: whether it answers is wait_ready's.)"""
    if container.is_external:
        return
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


def wait_ready(container: WahaContainer, timeout: float | None = None, detect: bool = True) -> None:
    """Block until the container answers its API with its key; then (when `detect`) read what
    it can do if that was not read since the container (re)started."""
    deadline = time.monotonic() + (timeout if timeout is not None else settings.WAHA_READY_TIMEOUT)
    client = client_for(container, retries=0)
    error: Exception | None = None
    while True:
        try:
            client.ping()
            break
        except WahaError as exc:
            error = exc
        if time.monotonic() >= deadline:
            raise ContainerNotReady(f"{container.name} did not answer in time: {error}")
        time.sleep(0.2)
    if detect and capabilities_stale(container):
        detect_capabilities(container)


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


def restart_runtime(container: WahaContainer) -> None:
    """Restart the container on its runtime (waha.sessions.restart_container resumes its sessions)."""
    runtime_of(container).restart(container.runtime_id)
    now = timezone.now()
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(status=ContainerStatus.RUNNING, started_at=now)
    container.status, container.started_at = ContainerStatus.RUNNING, now


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


def resize_containers(tenant) -> list[str]:
    """Apply the tenant's plan limits (memory, CPUs) to its own containers (tenant: a Tenant or its
    pk; read in its scope); returns their names."""
    with scope(tenant=getattr(tenant, "pk", tenant)):
        containers = list(WahaContainer.objects.select_related("tenant"))
        resized = []
        for container in containers:
            resources = plan_limits.container_resources(container.tenant)
            if resources is None:
                continue
            container.memory_mb, container.cpus = resources.memory_mb, resources.cpus
            WahaContainer.objects.filter(pk=container.pk).update(memory_mb=container.memory_mb, cpus=container.cpus)
            if container.runtime_id and container.status == ContainerStatus.RUNNING:
                runtime_of(container).resize(container.runtime_id, *limits_of(container))
            resized.append(container.name)
    return resized


def container_logs(container: WahaContainer, tail: int = 200) -> str:
    return runtime_of(container).logs(container.runtime_id, tail=tail)


def container_stats(container: WahaContainer) -> Stats:
    return runtime_of(container).stats(container.runtime_id)


def list_sessions(container: WahaContainer) -> list[dict]:
    """Every session WAHA has in the container (including STOPPED ones)."""
    return client_for(container).list_sessions(all=True)
