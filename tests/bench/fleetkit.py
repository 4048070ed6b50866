"""Containers for many tenants at once, through WHAGO, as the benchmarks need them."""
from __future__ import annotations

import threading
import time

from django.db import connection

from waha import manager
from whago.models import Tenant


def ensure_containers(tenants: list[Tenant], threads: int = 10, timeout: float = 900) -> float:
    """manager.ensure_container for every tenant, `threads` at a time; returns the seconds it took.

    Fails (AssertionError) with the errors when any placement failed."""
    errors: list[Exception] = []

    def create(batch: list[Tenant]) -> None:
        try:
            for tenant in batch:
                manager.ensure_container(tenant)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    started = time.monotonic()
    workers = [threading.Thread(target=create, args=(tenants[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout)
    elapsed = time.monotonic() - started
    assert errors == [], errors
    return elapsed
