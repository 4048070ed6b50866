"""Operator alerts: containers down too long, CPU or memory above their limits, orphans, and
servers that do not enforce their API key; each new alert e-mailed to the operators."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from .models import AlertRule, AlertState, ContainerAlert, ContainerStatus, WahaContainer
from .orphans import find_orphans
from .runtime import ContainerInfo

log = logging.getLogger(__name__)

# A container is created inside its tenant's transaction: no alert about that instant.
ALERT_ORPHAN_GRACE = timedelta(minutes=2)


def open_alert(subject: str, rule: str, message: str, container: WahaContainer | None, value: float | None):
    existing = ContainerAlert.objects.exclude(state=AlertState.RESOLVED).filter(subject=subject, rule=rule).first()
    if existing:
        if existing.value != value or existing.message != message:
            ContainerAlert.objects.filter(pk=existing.pk).update(value=value, message=message)
        return None
    try:
        with transaction.atomic():
            alert = ContainerAlert.objects.create(
                subject=subject, rule=rule, message=message, container=container, value=value
            )
    except IntegrityError:
        return None  # opened by a concurrent sweep
    _email_operators(alert)
    return alert


def alert_recipients() -> list[str]:
    """Who is e-mailed new alerts: OPERATOR_EMAILS, else every active staff user allowed to see them."""
    if settings.OPERATOR_EMAILS:
        return list(settings.OPERATOR_EMAILS)
    perm = {"codename": "view_containeralert", "content_type__app_label": "waha"}
    allowed = (
        Q(is_superuser=True)
        | Q(**{f"user_permissions__{key}": value for key, value in perm.items()})
        | Q(**{f"groups__permissions__{key}": value for key, value in perm.items()})
    )
    users = get_user_model().objects.filter(is_active=True, is_staff=True).filter(allowed).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def _email_operators(alert: ContainerAlert) -> None:
    """One e-mail per new alert (a mail server failure must not stop the sweep)."""
    recipients = alert_recipients()
    if not recipients:
        return
    link = settings.SITE_URL + reverse("admin:waha_containeralert_change", args=[alert.pk])
    try:
        send_mail(f"[WHAGO] {alert}", f"{alert.message}\n\n{link}\n", settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:  # noqa: BLE001 - SMTP errors of every kind
        log.warning("could not e-mail alert %s to operators: %s", alert.pk, exc)


def _resolve_alerts(subject: str, rules: Iterable[str]) -> int:
    return (
        ContainerAlert.objects.exclude(state=AlertState.RESOLVED)
        .filter(subject=subject, rule__in=list(rules))
        .update(state=AlertState.RESOLVED, resolved_at=timezone.now())
    )


def alert_sweep(orphans: list[tuple[str, ContainerInfo]] | None = None) -> dict[str, int]:
    """Open or resolve alerts: down > WAHA_ALERT_STOPPED_MINUTES, CPU and memory above limits, orphans."""
    now = timezone.now()
    opened = 0
    stale_stats = timedelta(minutes=5)
    with scopes_disabled():
        for c in WahaContainer.objects.select_related("tenant"):
            # A suspended tenant's containers are stopped on purpose: no "stopped" alert.
            down_for = now - c.down_since if c.down_since and (c.tenant is None or c.tenant.is_active) else None
            stopped_on_purpose = c.status == ContainerStatus.STOPPED
            checks = [
                (
                    AlertRule.DOWN,
                    not stopped_on_purpose and down_for is not None
                    and down_for > timedelta(minutes=settings.WAHA_ALERT_DOWN_MINUTES),
                    f"{c.name} has not answered since {c.down_since:%Y-%m-%d %H:%M} ({c.last_error or c.status}); "
                    "its chips show as reconnecting." if c.down_since else "",
                    down_for.total_seconds() / 60 if down_for else None,
                ),
                (
                    AlertRule.STOPPED,
                    stopped_on_purpose and down_for is not None
                    and down_for > timedelta(minutes=settings.WAHA_ALERT_STOPPED_MINUTES),
                    f"{c.name} has been down since {c.down_since:%Y-%m-%d %H:%M} ({c.last_error or c.status})."
                    if c.down_since
                    else "",
                    down_for.total_seconds() / 60 if down_for else None,
                ),
            ]
            fresh = c.last_stats_at and now - c.last_stats_at < stale_stats and c.status == ContainerStatus.RUNNING
            checks.append(
                (
                    AlertRule.CPU,
                    bool(fresh and (c.last_cpu_percent or 0) > settings.WAHA_ALERT_CPU_PERCENT),
                    f"{c.name} uses {c.last_cpu_percent} % of its CPU limit.",
                    c.last_cpu_percent,
                )
            )
            checks.append(
                (
                    AlertRule.MEMORY,
                    bool(fresh and (c.last_memory_percent or 0) > settings.WAHA_ALERT_MEMORY_PERCENT),
                    f"{c.name} uses {c.last_memory_percent} % of its memory limit.",
                    c.last_memory_percent,
                )
            )
            checks.append(
                (
                    AlertRule.INSECURE,
                    c.key_enforced is False,
                    f"{c.name} ({c.base_url}, WAHA {c.version or '?'} {c.get_engine_display()}) answers without "
                    "its API key: whoever reaches it can read and send as its sessions. Keep it on a private "
                    "network, or use a WAHA that enforces WHATSAPP_API_KEY.",
                    None,
                )
            )
            for rule, firing, message, value in checks:
                if firing:
                    opened += bool(open_alert(c.name, rule, message, c, value))
                else:
                    _resolve_alerts(c.name, [rule])
        if orphans is None:
            orphans = find_orphans(grace=ALERT_ORPHAN_GRACE)
        orphan_names = {info.name for _, info in orphans}
        for runtime_name, info in orphans:
            opened += bool(
                open_alert(
                    info.name,
                    AlertRule.ORPHAN,
                    f"{runtime_name} container {info.name} ({info.status}) is labelled for this WHAGO but has no row.",
                    None,
                    None,
                )
            )
        for alert in ContainerAlert.objects.filter(rule=AlertRule.ORPHAN).exclude(state=AlertState.RESOLVED):
            if alert.subject not in orphan_names:
                _resolve_alerts(alert.subject, [AlertRule.ORPHAN])
    return {"opened": opened}


