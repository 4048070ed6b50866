"""The operators' audit log: who asked for what, on which target, when, and how it ended.

A console action writes its entry when asked (status RUNNING); the worker that does the
work completes it with `succeed` or `fail`. The admin waits a little for that outcome.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone
from django_scopes import scopes_disabled

# action_label is part of this module's API (the labels live with the model, which shows them).
from .models import AUDITED_ACTIONS, AuditLog, Tenant, action_label  # noqa: F401


def name_actions(labels: dict[str, Any]) -> None:
    """An app names its own audited actions (code -> label, a lazy text): whago imports no app."""
    AUDITED_ACTIONS.update(labels)


def record(
    action: str,
    *,
    actor=None,
    target: models.Model | None = None,
    tenant: Tenant | int | None = None,
    status: str = AuditLog.Status.RUNNING,
    result: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditLog:
    """Write an entry; the tenant defaults to the target's (a tenant, or a row with tenant_id)."""
    if tenant is None and target is not None:
        tenant = target.pk if isinstance(target, Tenant) else getattr(target, "tenant_id", None)
    finished = status != AuditLog.Status.RUNNING
    with scopes_disabled():
        return AuditLog.objects.create(
            actor=actor if getattr(actor, "pk", None) else None,
            actor_email=getattr(actor, "email", "") or "",
            action=action,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            target_repr=str(target)[:200] if target is not None else "",
            tenant_id=getattr(tenant, "pk", tenant),
            status=status,
            result=result,
            detail=detail or {},
            finished_at=timezone.now() if finished else None,
        )


def succeed(entry: AuditLog | int, result: str, detail: dict[str, Any] | None = None) -> None:
    """Complete an entry as done, with a one-line result for the operator."""
    _finish(entry, AuditLog.Status.SUCCEEDED, result=result[:5000], detail=detail)


def fail(entry: AuditLog | int, error: str, detail: dict[str, Any] | None = None) -> None:
    """Complete an entry as failed, with the error the operator sees."""
    _finish(entry, AuditLog.Status.FAILED, error=error[:5000], detail=detail)


def _finish(entry: AuditLog | int, status: str, detail: dict[str, Any] | None = None, **fields) -> None:
    changes = {"status": status, "finished_at": timezone.now(), **fields}
    if detail is not None:
        changes["detail"] = detail
    with scopes_disabled():
        AuditLog.objects.filter(pk=getattr(entry, "pk", entry)).update(**changes)


def wait(entries: Iterable[AuditLog], timeout: float, interval: float = 0.2) -> list[AuditLog]:
    """The entries re-read until none is RUNNING or `timeout` seconds passed (whichever first)."""
    ids = [entry.pk for entry in entries]
    deadline = time.monotonic() + timeout
    while True:
        with scopes_disabled():
            rows = list(AuditLog.objects.filter(pk__in=ids).order_by("pk"))
        if all(row.is_finished for row in rows) or time.monotonic() >= deadline:
            return rows
        time.sleep(interval)
