"""Where a session goes: the tenant's own container (ports reserved in the database), a container
shared by the FREE plan's tenants (WAHA_FREE_PLACEMENT=shared: one Plus container holds many
tenants' sessions, sized by WAHA's own figures, instead of a container per free sign-up), or an
external WAHA server that operators registered (shared by every tenant, runtime "external")."""
from __future__ import annotations

import logging
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone
from django_scopes import scopes_disabled

from billing import limits as plan_limits
from whago.models import Tenant

from .alerts import open_alert
from .containers import WahaManagerError, ensure_started, instance_slug, runtime_of, spec_for, wait_ready
from .models import AlertRule, ContainerStatus, Engine, WahaContainer, WahaSession

log = logging.getLogger(__name__)


class PortRangeExhausted(WahaManagerError):
    """Every port of WAHA_PORT_RANGE is reserved: no container can be created."""


class NoServerWithRoom(WahaManagerError):
    """Every registered external WAHA server is full (or none is registered and healthy)."""


class TenantSuspended(WahaManagerError):
    """The tenant is suspended (whago.services.suspend_tenant): nothing is started for it."""


def port_range() -> range:
    """The ports of settings.WAHA_PORT_RANGE ("3100-3199")."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", settings.WAHA_PORT_RANGE)
    if not match or int(match[1]) > int(match[2]):
        raise WahaManagerError(f"WAHA_PORT_RANGE must look like 3100-3199, not {settings.WAHA_PORT_RANGE!r}.")
    return range(int(match[1]), int(match[2]) + 1)


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


def _reserve(tenant: Tenant | None, engine: str) -> WahaContainer:
    """Insert a container row on a free port (the unique constraint arbitrates races)."""
    taken = set(WahaContainer.objects.exclude(port=None).values_list("port", flat=True))
    for port in port_range():
        if port in taken or not _port_is_free(port):
            continue
        try:
            with transaction.atomic():
                # A shared container is sized by WAHA_MEMORY_LIMIT / WAHA_CPU_LIMIT (its capacity's worth).
                resources = plan_limits.container_resources(tenant) if tenant else None
                owner = f"t{tenant.pk}" if tenant else "shared"
                return WahaContainer.objects.create(
                    tenant=tenant,
                    name=f"whago-{instance_slug()}-waha-{owner}-{secrets.token_hex(3)}",
                    runtime=settings.WAHA_RUNTIME,
                    port=port,
                    image=settings.WAHA_IMAGE if settings.WAHA_RUNTIME == "docker" else "waha.simulator",
                    engine=engine,
                    capacity=settings.WAHA_SESSIONS_PER_CONTAINER if engine == Engine.PLUS else 1,
                    memory_mb=resources.memory_mb if resources else None,
                    cpus=resources.cpus if resources else None,
                )
        except IntegrityError:
            continue  # another transaction took this port a moment ago
    raise PortRangeExhausted(
        f"All ports of WAHA_PORT_RANGE {settings.WAHA_PORT_RANGE} are in use: "
        "widen the range or free containers before creating another."
    )


def _create_container(tenant: Tenant | None) -> WahaContainer:
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
    log.info("created WAHA container %s on port %s for %s", container.name, container.port,
             f"tenant {tenant.pk}" if tenant else "the FREE plan's tenants")
    return container


def _own_container_with_room(tenant: Tenant) -> WahaContainer | None:
    return (
        WahaContainer.objects.filter(tenant=tenant)
        .exclude(status=ContainerStatus.FAILED)
        .annotate(used=Count("sessions"))
        .filter(used__lt=F("capacity"))
        .order_by("created_at")
        .first()
    )


def _shared_with_room(runtime: str) -> WahaContainer | None:
    """The least used shared container (or registered server) of a runtime with a free seat.

    Shared rows are locked (in id order, so concurrent placements queue instead of deadlocking)
    while the seats of every tenant in them are counted.
    """
    servers = list(
        WahaContainer.objects.select_for_update()
        .filter(runtime=runtime, tenant=None, status=ContainerStatus.RUNNING)
        .order_by("pk")
    )
    used = dict(
        WahaSession.objects.filter(container__in=servers).values_list("container_id").annotate(n=Count("pk"))
    )
    with_room = [s for s in servers if used.get(s.pk, 0) < s.capacity]
    if not with_room:
        return None
    return min(with_room, key=lambda s: (not s.healthy, used.get(s.pk, 0) / max(s.capacity, 1), s.pk))


def _shares_containers(tenant: Tenant) -> bool:
    return settings.WAHA_FREE_PLACEMENT == "shared" and plan_limits.on_free_plan(tenant)


def place(tenant: Tenant) -> WahaContainer:
    """The container a new session of the tenant goes to; call inside lock_tenant's transaction."""
    if settings.WAHA_RUNTIME == "external":
        server = _shared_with_room("external")
        if server is None:
            raise NoServerWithRoom(
                "No registered WAHA server has room for another session: register another server or raise a "
                "capacity."
            )
        return server
    if _shares_containers(tenant):
        return _shared_with_room(settings.WAHA_RUNTIME) or _create_container(None)
    return _own_container_with_room(tenant) or _create_container(tenant)


@contextmanager
def placing() -> Iterator[None]:
    """Around a placement's transaction: when no room is left, the operators get an alert (opened
    after the rollback, so that it stays)."""
    try:
        yield
    except (PortRangeExhausted, NoServerWithRoom) as exc:
        open_alert("placement", AlertRule.CAPACITY, str(exc), None, None)
        raise


def lock_tenant(tenant: Tenant | int) -> Tenant:
    """Lock the tenant row (placements of one tenant queue); refuse a suspended tenant."""
    if settings.WAHA_PLACEMENT != "per_tenant":
        raise WahaManagerError(f"WAHA_PLACEMENT {settings.WAHA_PLACEMENT!r} is not supported: use per_tenant.")
    locked = Tenant.objects.select_for_update(no_key=True).get(pk=getattr(tenant, "pk", tenant))
    if not locked.is_active:
        raise TenantSuspended(f"Tenant {locked.pk} is suspended: its containers and sessions stay stopped.")
    return locked


def ensure_container(tenant: Tenant | int, wait: bool = True) -> WahaContainer:
    """A container with room for one more session of the tenant, created when none has room
    (its own, or a shared one: see place).

    Idempotent under concurrency: the tenant row is locked while choosing or creating,
    so simultaneous calls for one tenant get the same container.
    """
    with scopes_disabled():
        with placing(), transaction.atomic():
            container = place(lock_tenant(tenant))
        ensure_started(container)
        if wait:
            wait_ready(container)
        return container
