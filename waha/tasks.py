"""Celery tasks of the waha app: thin wrappers around waha.manager.

Beat runs the sweeps (schedules created by migration 0002): health every 30 s, stats and
alerts every 60 s, orphan cleanup every hour.
"""
from __future__ import annotations

import contextlib
import uuid

from celery import shared_task
from django.core.cache import cache
from django_scopes import scopes_disabled

from whago import audit

from . import manager, ops
from .client import ContainerUnreachable, WahaServerError
from .models import WahaContainer, WahaSession
from .runtime import RuntimeFailure

# Transient failures worth retrying: the container is (re)starting or overloaded.
TRANSIENT = (ContainerUnreachable, WahaServerError, manager.ContainerNotReady)


def _container(container_id: int) -> WahaContainer:
    with scopes_disabled():
        return WahaContainer.objects.get(pk=container_id)


def _session(session_id: int) -> WahaSession:
    with scopes_disabled():
        return WahaSession.objects.select_related("container").get(pk=session_id)


@shared_task(autoretry_for=(*TRANSIENT, RuntimeFailure), retry_backoff=5, retry_kwargs={"max_retries": 5})
def resize_containers(tenant_id: int) -> list[str]:
    """Apply the tenant's plan limits to its containers."""
    return manager.resize_containers(tenant_id)


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 5})
def ensure_container(tenant_id: int) -> int:
    """Make sure the tenant has a running container with room; returns its id."""
    return manager.ensure_container(tenant_id).pk


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 5})
def provision_session(tenant_id: int, name: str, proxy: dict | None = None, metadata: dict | None = None) -> int:
    """Place and create (or update) a session for a tenant, started; returns the WahaSession id."""
    return manager.create_session(tenant_id, name, proxy=proxy, metadata=metadata, start=True).pk


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def start_session(session_id: int) -> None:
    manager.start_session(_session(session_id))


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def stop_session(session_id: int) -> None:
    manager.stop_session(_session(session_id))


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def restart_session(session_id: int) -> None:
    manager.restart_session(_session(session_id))


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def logout_session(session_id: int) -> None:
    manager.logout_session(_session(session_id))


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def delete_session(session_id: int) -> None:
    with scopes_disabled():
        session = WahaSession.objects.select_related("container").filter(pk=session_id).first()
    if session:
        manager.delete_session(session)


@shared_task
def start_container(container_id: int) -> None:
    manager.start_container(_container(container_id))


@shared_task
def stop_container(container_id: int) -> None:
    manager.stop_container(_container(container_id))


@shared_task
def restart_container(container_id: int) -> None:
    manager.restart_container(_container(container_id))


@shared_task
def delete_container(container_id: int, volume: bool = False) -> None:
    with scopes_disabled():
        container = WahaContainer.objects.filter(pk=container_id).first()
    if container:
        manager.delete_container(container, volume=volume)


@contextlib.contextmanager
def _alone(name: str, seconds: int):
    """Yield True when no other copy of this sweep runs (a slow sweep must not overlap the next)."""
    key, token = f"waha:sweep:{name}", uuid.uuid4().hex
    acquired = cache.add(key, token, timeout=seconds)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


@shared_task(expires=25)
def health_sweep() -> dict:
    with _alone("health", 300) as alone:
        return manager.health_sweep() if alone else {"skipped": ["another health sweep is running"]}


@shared_task(expires=55)
def stats_sweep() -> dict:
    with _alone("stats", 300) as alone:
        return manager.stats_sweep() if alone else {"skipped": 1}


@shared_task(expires=55)
def alert_sweep() -> dict:
    with _alone("alerts", 300) as alone:
        return manager.alert_sweep() if alone else {"skipped": 1}


@shared_task(expires=3000)
def cleanup_orphans() -> dict:
    with _alone("orphans", 3000) as alone:
        return manager.cleanup_orphans() if alone else {"skipped": ["another cleanup is running"]}


# --- operators' console (waha.ops): actions recorded in the audit log ---------------------


@shared_task
def run_container_action(entry_id: int) -> None:
    """Do the container action of an audit entry (start, stop, restart, delete, list sessions...)."""
    ops.run_action(entry_id)


@shared_task
def run_orphan_cleanup(entry_id: int) -> None:
    """An orphan cleanup asked by an operator, recorded in its audit entry."""
    with _alone("orphans", 3000) as alone:
        if alone:
            ops.run_orphan_cleanup(entry_id)
        else:
            audit.fail(entry_id, "Another orphan cleanup is running; try again in a moment.")


@shared_task(expires=60)
def read_container_logs(container_id: int, tail: int, token: str) -> None:
    """Leave a container's log tail in the cache for the admin page that asked (by token)."""
    ops.read_logs(container_id, tail, token)
