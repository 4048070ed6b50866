"""The operators' dashboard in the admin: platform totals and the 7-day utilisation chart.

This page knows every app (tenants, billing, chips, waha), which is why it lives in the console
(whago.console) and not in whago's core.
"""
from decimal import Decimal

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scopes_disabled

from billing.models import Gateway, Payment, Subscription
from chips.models import Message
from waha import ops
from waha.models import AlertState, ContainerAlert, ContainerStatus, SessionStatus, WahaContainer, WahaSession
from whago.heartbeats import states as process_states
from whago.models import Tenant


def totals() -> dict:
    """The dashboard's figures, each one aggregate query."""
    now = timezone.localtime()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    with scopes_disabled():
        tenants = Tenant.objects.aggregate(
            total=Count("pk"),
            active=Count("pk", filter=Q(is_active=True)),
            suspended=Count("pk", filter=Q(is_active=False)),
        )
        subscriptions = Subscription.objects.aggregate(
            active=Count("pk", filter=Q(status=Subscription.Status.ACTIVE)),
            paid=Count("pk", filter=Q(status__in=Subscription.IN_FORCE, plan__price_brl__gt=0)),
            trialing=Count("pk", filter=Q(status=Subscription.Status.TRIALING)),
            past_due=Count("pk", filter=Q(status=Subscription.Status.PAST_DUE)),
        )
        containers = dict(WahaContainer.objects.order_by().values_list("status").annotate(n=Count("pk")))
        sessions = dict(WahaSession.objects.order_by().values_list("status").annotate(n=Count("pk")))
        messages = Message.objects.filter(created_at__gte=today).aggregate(
            sent=Count("pk", filter=Q(direction=Message.Direction.OUT)),
            received=Count("pk", filter=Q(direction=Message.Direction.IN)),
            failed=Count("pk", filter=Q(status=Message.Status.FAILED)),
        )
        # Test payments of the sandbox gateway are not revenue.
        revenue = Payment.objects.filter(status=Payment.Status.PAID, paid_at__gte=month).exclude(
            gateway=Gateway.SANDBOX).aggregate(
            total=Sum("amount"), count=Count("pk")
        )
        alerts = ContainerAlert.objects.aggregate(
            open=Count("pk", filter=Q(state=AlertState.OPEN)),
            acknowledged=Count("pk", filter=Q(state=AlertState.ACKNOWLEDGED)),
        )
    return {
        "tenants": tenants,
        "subscriptions": subscriptions,
        "containers": [(label, containers.get(value, 0), value) for value, label in ContainerStatus.choices],
        "containers_running": containers.get(ContainerStatus.RUNNING, 0),
        "containers_stopped": containers.get(ContainerStatus.STOPPED, 0),
        "sessions": [(label, sessions.get(value, 0), value) for value, label in SessionStatus.choices],
        "sessions_total": sum(sessions.values()),
        "messages": messages,
        "revenue": revenue["total"] or Decimal("0"),
        "revenue_payments": revenue["count"],
        "alerts": alerts,
        "month": month,
        "processes": process_states(),
    }


MIN_CHART_HOURS = 12


def recent(series: dict) -> dict:
    """The series from its first hour with samples (at least MIN_CHART_HOURS): a platform sampled for
    a few hours draws over those hours, not as a dot at the end of an empty week."""
    labels = series["labels"]
    keys = [key for key in series if key != "labels"]
    first = next((i for i in range(len(labels)) if any(series[key][i] is not None for key in keys)), len(labels))
    start = max(0, min(first, len(labels) - MIN_CHART_HOURS))
    return {key: values[start:] for key, values in series.items()}


def charts(series: dict) -> dict:
    """Chart.js data: containers and sessions; CPU and memory."""
    series = recent(series)
    return {
        "load": {
            "labels": series["labels"],
            "datasets": [
                {"label": _("Containers"), "data": series["containers"], "axis": "y", "color": "#1565c0"},
                {"label": _("Sessions"), "data": series["sessions"], "axis": "y", "color": "#2e7d32"},
            ],
            "axes": {"y": _("count")},
        },
        "resources": {
            "labels": series["labels"],
            "datasets": [
                {"label": _("CPU % (mean)"), "data": series["cpu"], "axis": "y", "color": "#6a1b9a"},
                {"label": _("RAM in use (GB)"), "data": series["memory_gb"], "axis": "y1", "color": "#ef6c00"},
            ],
            "axes": {"y": _("CPU %"), "y1": _("GB")},
        },
    }


def dashboard(request: HttpRequest) -> HttpResponse:
    """/admin/dashboard/: operators with the whago.view_dashboard permission."""
    if not request.user.has_perm("whago.view_dashboard"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": _("Operations dashboard"),
        "totals": totals(),
        "charts": charts(ops.cached_utilisation(7)),
    }
    return TemplateResponse(request, "admin/ops/dashboard.html", context)
