"""The stats sweep: CPU and memory of every running container, sampled once a minute."""
from __future__ import annotations

import logging
import os
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from django_scopes import scopes_disabled

from .containers import container_stats
from .health import concurrently
from .models import ContainerStatus, StatsSample, WahaContainer, WahaSession

log = logging.getLogger(__name__)

SAMPLES_KEPT = timedelta(days=8)


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
        for container, stats in concurrently(container_stats, containers):
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


