"""The operators' audit log is pruned after AUDIT_LOG_RETENTION_DAYS; an entry still running is kept."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from whago import audit, tasks
from whago.models import AuditLog

pytestmark = pytest.mark.django_db
Status = AuditLog.Status


def add_entry(days_old: float, status: str = Status.SUCCEEDED) -> int:
    entry = audit.record("container.restart", status=status)
    with scopes_disabled():
        AuditLog.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(days=days_old))
    return entry.pk


def kept() -> set[int]:
    with scopes_disabled():
        return set(AuditLog.objects.values_list("pk", flat=True))


def test_old_entries_go_running_ones_and_recent_ones_stay(settings):
    settings.AUDIT_LOG_RETENTION_DAYS = 365
    settings.PRUNE_BATCH_SIZE = 2
    old = [add_entry(366) for _ in range(4)] + [add_entry(400, Status.FAILED)]
    running = add_entry(500, Status.RUNNING)
    recent = {add_entry(364), add_entry(0, Status.FAILED)}

    assert tasks.prune_audit_log() == len(old)
    assert kept() == recent | {running}


def test_retention_follows_the_setting(settings):
    _old, b = add_entry(100), add_entry(10)
    settings.AUDIT_LOG_RETENTION_DAYS = 365
    assert tasks.prune_audit_log() == 0
    settings.AUDIT_LOG_RETENTION_DAYS = 30
    assert tasks.prune_audit_log() == 1
    assert kept() == {b}
