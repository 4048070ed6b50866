"""Where a session goes: the tenant's own container (ports reserved in the database), a container
shared by the FREE plan's tenants (WAHA_FREE_PLACEMENT=shared: one Plus container holds many
tenants' sessions, sized by WAHA's own figures, instead of a container per free sign-up), or an
external WAHA server that operators registered (shared by every tenant, runtime "external")."""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F
from django.utils import timezone
from django_scopes import scopes_disabled

from billing import limits as plan_limits
from whago.models import Tenant

from .alerts import open_alert
from .containers import WahaManagerError, ensure_started, instance_slug, runtime_of, spec_for, wait_ready
from .models import AlertRule, ContainerStatus, Engine, WahaContainer, WahaSession
from .runtime import ContainerMissing, Node, RuntimeFailure, get_runtime
from .runtime.docker import memory_bytes

log = logging.getLogger(__name__)


class PortRangeExhausted(WahaManagerError):
    """Every port of WAHA_PORT_RANGE is reserved (on every node): no container can be created."""


class NoNodeWithRoom(PortRangeExhausted):
    """Runtime swarm: no WAHA node is ready with memory left for another container."""


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


def _port_is_free(port: int, node: Node | None = None) -> bool:
    """Nothing else on this host listens on the port (another program, another instance)."""
    if settings.WAHA_NETWORK_MODE == "network" and settings.WAHA_RUNTIME in ("docker", "swarm"):
        return True
    if node is not None and not node.local:
        return True  # another host's ports: a clash there stops the task, and the sweep says so
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- nodes (runtime swarm) ---------------------------------------------------------------


def waha_nodes(nodes: list[Node]) -> list[Node]:
    """The nodes that take WAHA containers: ready and active, and labelled for WAHA
    (WAHA_SWARM_NODE_LABEL=true) when any node of the swarm is."""
    if any(node.labelled for node in nodes):
        nodes = [node for node in nodes if node.labelled]
    return [node for node in nodes if node.ready]


def _reserved_bytes(memory_mb: int | None) -> int:
    memory = memory_mb * 1024**2 if memory_mb else memory_bytes(settings.WAHA_MEMORY_LIMIT)
    return int(memory * settings.WAHA_SWARM_MEMORY_RESERVATION)


def node_usage() -> dict[str, tuple[int, int]]:
    """Per node id: the containers pinned to it and the memory they reserve there (bytes)."""
    usage: dict[str, tuple[int, int]] = {}
    for node, memory_mb in WahaContainer.objects.exclude(node="").values_list("node", "memory_mb"):
        count, reserved = usage.get(node, (0, 0))
        usage[node] = (count + 1, reserved + _reserved_bytes(memory_mb))
    return usage


def rank_nodes(nodes: list[Node], needed: int, usage: dict[str, tuple[int, int]]) -> list[Node]:
    """The WAHA nodes with memory left for a container reserving `needed` bytes, the least used
    first (fewest containers, then least memory reserved): containers spread over the nodes."""
    fit = [n for n in waha_nodes(nodes) if not n.memory_bytes or usage.get(n.id, (0, 0))[1] + needed <= n.memory_bytes]
    return sorted(fit, key=lambda n: (*usage.get(n.id, (0, 0)), n.name))


def _targets(memory_mb: int | None, exclude: str = "") -> list[Node | None]:
    """Where a new container may go: [None] on a single-host runtime, else the ranked nodes."""
    nodes = get_runtime(settings.WAHA_RUNTIME).nodes()
    if nodes is None:
        return [None]
    ranked = [n for n in rank_nodes(nodes, _reserved_bytes(memory_mb), node_usage()) if n.id != exclude]
    if not ranked:
        ready = len(waha_nodes(nodes))
        raise NoNodeWithRoom(
            f"No Swarm node can take another WAHA container: {ready} WAHA node(s) ready"
            + (f", none with {_reserved_bytes(memory_mb) // 1024**2} MB of memory left to reserve" if ready else "")
            + ". Add a node (docs/deploy.md) or make room."
        )
    return ranked


PORT_LOCKS = 0x57414841  # "WAHA": the advisory lock space of ports being reserved


def _claimed(node: Node | None, port: int) -> bool:
    """Whether this transaction may try the port: no other placement is reserving it right now.

    Concurrent placements (other tenants) would otherwise all insert the first free port and
    queue behind the one transaction that holds it until its container runs (PostgreSQL waits
    on the unique key), then retry the next port: one at a time. A transaction-level advisory
    lock per (node, port) sends each to a different port at once.
    """
    if connection.vendor != "postgresql":
        return True  # SQLite (the embedded mode) has one writer at a time anyway
    key = zlib.crc32(f"{node.id if node else ''}:{port}".encode()) - 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [PORT_LOCKS, key])
        return cursor.fetchone()[0]


def _free_ports(node: Node | None, first: int | None = None) -> Iterator[int]:
    """The ports of WAHA_PORT_RANGE not reserved on the node (`first` tried first)."""
    taken = set(WahaContainer.objects.filter(node=node.id if node else "").exclude(port=None)
                .values_list("port", flat=True))
    ports = port_range()
    for port in ([first] if first in ports else []) + [p for p in ports if p != first]:
        if port not in taken and _port_is_free(port, node) and _claimed(node, port):
            yield port


def _on_node(node: Node | None) -> dict:
    return {"node": node.id, "node_name": node.name, "node_address": node.address} if node else {}


def _exhausted(targets: list) -> PortRangeExhausted:
    where = f" on every WAHA node ({len(targets)})" if targets != [None] else ""
    return PortRangeExhausted(
        f"All ports of WAHA_PORT_RANGE {settings.WAHA_PORT_RANGE} are in use{where}: "
        "widen the range" + (", add a node" if where else "") + " or free containers before creating another."
    )


def _reserve(tenant: Tenant | None, engine: str) -> WahaContainer:
    """Insert a container row on a free port (of the chosen node; the unique constraint arbitrates races)."""
    # A shared container is sized by WAHA_MEMORY_LIMIT / WAHA_CPU_LIMIT (its capacity's worth).
    resources = plan_limits.container_resources(tenant) if tenant else None
    targets = _targets(resources.memory_mb if resources else None)
    for node in targets:
        for port in _free_ports(node):
            try:
                with transaction.atomic():
                    owner = f"t{tenant.pk}" if tenant else "shared"
                    return WahaContainer.objects.create(
                        tenant=tenant,
                        name=f"whago-{instance_slug()}-waha-{owner}-{secrets.token_hex(3)}",
                        runtime=settings.WAHA_RUNTIME,
                        port=port,
                        image=settings.WAHA_IMAGE if settings.WAHA_RUNTIME in ("docker", "swarm") else "waha.simulator",
                        engine=engine,
                        capacity=settings.WAHA_SESSIONS_PER_CONTAINER if engine == Engine.PLUS else 1,
                        memory_mb=resources.memory_mb if resources else None,
                        cpus=resources.cpus if resources else None,
                        **_on_node(node),
                    )
            except IntegrityError:
                continue  # another transaction took this port a moment ago
    raise _exhausted(targets)


def _stranded(container: WahaContainer, node: Node | None) -> bool:
    """Pinned to a node that left the swarm or was drained (the operators want it emptied), or that
    has been down for WAHA_SWARM_NODE_LOST_SECONDS while the container was down."""
    if node is None or node.availability == "drain":
        return True
    if node.state == "ready":
        return False
    lost_for = timedelta(seconds=settings.WAHA_SWARM_NODE_LOST_SECONDS)
    return container.down_since is not None and timezone.now() - container.down_since >= lost_for


def move_container(container: WahaContainer, exclude: str = "") -> WahaContainer:
    """Pin the container to another WAHA node (its port kept when free there) and tell the runtime.

    The data volume stays on the old node: the sessions come back from WAHA Plus's PostgreSQL
    store when it is used, else the health sweep creates them again and the tenants scan again.
    """
    with scopes_disabled(), transaction.atomic():
        locked = WahaContainer.objects.select_for_update().get(pk=container.pk)
        targets = _targets(locked.memory_mb, exclude=exclude or locked.node)
        for node in targets:
            for port in _free_ports(node, first=locked.port):
                try:
                    with transaction.atomic():
                        WahaContainer.objects.filter(pk=locked.pk).update(port=port, **_on_node(node))
                except IntegrityError:
                    continue
                old = locked.node_name or locked.node
                locked.port = port
                for key, value in _on_node(node).items():
                    setattr(locked, key, value)
                with contextlib.suppress(ContainerMissing):  # gone: the health sweep creates it there
                    runtime_of(locked).move(locked.runtime_id, spec_for(locked))
                log.warning("moved WAHA container %s from node %s to %s (port %s)", locked.name, old, node.name, port)
                return locked
        raise _exhausted(targets)


def relocate_stranded(containers: list[WahaContainer]) -> list[str]:
    """Runtime swarm, before the health sweep probes: the address of each container's node kept
    current, and containers stranded on a drained, lost or removed node moved to another node.
    Updates the objects given; returns the names of those moved."""
    pinned = [c for c in containers if c.runtime == "swarm" and c.node and c.status == ContainerStatus.RUNNING]
    if not pinned:
        return []
    try:
        nodes = {node.id: node for node in get_runtime("swarm").nodes() or []}
    except RuntimeFailure as exc:
        log.warning("cannot list the swarm's nodes: %s", exc)
        return []
    moved = []
    for container in pinned:
        node = nodes.get(container.node)
        if node is not None and (node.address, node.name) != (container.node_address, container.node_name):
            container.node_address, container.node_name = node.address, node.name
            with scopes_disabled():
                WahaContainer.objects.filter(pk=container.pk).update(node_address=node.address, node_name=node.name)
        if not _stranded(container, node):
            continue
        try:
            placed = move_container(container)
        except (WahaManagerError, RuntimeFailure) as exc:
            # Nowhere to go (one node, or none with room): it stays down, the sweep and alerts say why.
            log.warning("cannot move %s off node %s: %s", container.name, container.node_name, exc)
            continue
        for key in ("port", "node", "node_name", "node_address"):
            setattr(container, key, getattr(placed, key))
        moved.append(container.name)
    return moved


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
