"""Pruning of append-only tables: old rows deleted in bounded batches (each a short transaction).

The apps' hourly beat tasks call `prune` with the rows they no longer need (see CELERY_BEAT_SCHEDULE
and the *_RETENTION_DAYS settings); StatsSample is pruned by the stats sweep itself.
"""
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone


def cutoff(days: int) -> timezone.datetime:
    """The moment before which rows kept `days` days are old."""
    return timezone.now() - timedelta(days=days)


def prune(rows: QuerySet, batch_size: int | None = None) -> int:
    """Delete `rows` (evaluated again for every batch) at most `batch_size` at a time; returns how many went."""
    batch_size = batch_size or settings.PRUNE_BATCH_SIZE
    model, total = rows.model, 0
    while True:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        _, per_model = model._base_manager.filter(pk__in=ids).delete()
        total += per_model.get(model._meta.label, 0)
