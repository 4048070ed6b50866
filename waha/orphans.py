"""Orphans both ways: runtime containers labelled for this instance with no row are removed,
and rows whose container the runtime lost get it created again."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_scopes import scopes_disabled

from .containers import runtime_of, spec_for
from .models import ContainerStatus, WahaContainer
from .runtime import ContainerInfo, RuntimeFailure, get_runtime

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(minutes=10)


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
        for container in WahaContainer.objects.exclude(status=ContainerStatus.CREATING).exclude(runtime="external"):
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

