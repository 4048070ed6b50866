"""The operators' console for WAHA: containers (actions, logs, stats), sessions, events, alerts.

Container actions are done by the worker (waha.ops): the admin records them in the audit
log, waits OPS_ACTION_WAIT_SECONDS for the outcome and shows it as a message (or a link to
the audit entry while it still runs). Destructive ones (stop, restart, delete, orphan
cleanup) are asked again on a confirmation page.
"""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from whago import audit
from whago.admin_tools import BigTableAdmin, ConsoleAdmin, status_dot
from whago.models import AuditLog

from . import manager, ops
from .client import Unauthorized, WahaClient, WahaError
from .containers import read_capabilities, record_capabilities
from .models import (
    AlertState,
    ContainerAlert,
    ContainerStatus,
    ExternalServer,
    StatsSample,
    WahaContainer,
    WahaSession,
    WebhookEvent,
)

TAIL_CHOICES = (50, 200, 1000)


def report_entries(request: HttpRequest, entries: list[AuditLog]) -> None:
    """Wait a little for the worker, then say how each action ended (or that it still runs)."""
    for entry in audit.wait(entries, timeout=settings.OPS_ACTION_WAIT_SECONDS):
        link = reverse("admin:whago_auditlog_change", args=[entry.pk])
        target = entry.target_repr or entry.action
        if entry.status == AuditLog.Status.SUCCEEDED:
            messages.success(request, format_html("{}: {}", target, entry.result))
        elif entry.status == AuditLog.Status.FAILED:
            messages.error(request, format_html("{}: {}", target, entry.error))
        else:
            messages.warning(
                request,
                format_html('{}: {} <a href="{}">{}</a>', target, _("still running in the worker."), link,
                            _("Follow it in the audit log.")),
            )


def confirmation(request: HttpRequest, modeladmin: admin.ModelAdmin, **context) -> TemplateResponse:
    """The console's confirmation page (admin/ops/confirm.html)."""
    opts = modeladmin.model._meta
    return TemplateResponse(
        request,
        "admin/ops/confirm.html",
        {**modeladmin.admin_site.each_context(request), "opts": opts, **context},
    )


# --- containers -----------------------------------------------------------------------


class OpenAlertFilter(admin.SimpleListFilter):
    title = _("alerts")
    parameter_name = "alert"

    def lookups(self, request, model_admin):
        return [("open", _("with unresolved alerts")), ("none", _("without alerts"))]

    def queryset(self, request, queryset):
        unresolved = Exists(
            ContainerAlert.objects.filter(container=OuterRef("pk")).exclude(state=AlertState.RESOLVED)
        )
        if self.value() == "open":
            return queryset.filter(unresolved)
        if self.value() == "none":
            return queryset.exclude(unresolved)
        return queryset


class DeleteOptionsForm(forms.Form):
    volume = forms.BooleanField(
        label=_("Also remove the data volume (the sessions' WhatsApp logins are lost)"), required=False
    )


class OrphanOptionsForm(forms.Form):
    volumes = forms.BooleanField(label=_("Also remove the orphans' data volumes"), required=False)


class WahaSessionInline(admin.TabularInline):
    model = WahaSession
    extra = 0
    fields = ["name", "remote_name", "status", "should_run", "me_id", "updated_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


def _count(model, **filters) -> Coalesce:
    """A correlated COUNT per row (no join that multiplies rows)."""
    rows = model.objects.filter(**filters).order_by().values(*filters).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


@admin.register(WahaContainer)
class WahaContainerAdmin(ConsoleAdmin):
    list_display = [
        "name", "tenant", "status_badge", "on_node", "port", "engine", "sessions_in_use", "uptime", "cpu", "memory",
        "open_alerts",
    ]
    list_filter = ["status", OpenAlertFilter, "healthy", "runtime", "engine", "node_name"]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__name", "tenant__slug", "runtime_id"]
    readonly_fields = [
        "tenant", "name", "runtime", "runtime_id", "port", "image", "engine", "status", "healthy", "started_at",
        "last_health_at", "last_error", "down_since", "restart_count", "last_cpu_percent", "memory",
        "last_memory_percent", "last_stats_at", "created_at", "updated_at", "url", "version", "whatsapp_engine",
        "key_enforced", "capabilities_at", "node_name", "node_address",
    ]
    fields = [*readonly_fields[:8], "capacity", *readonly_fields[8:]]
    inlines = [WahaSessionInline]
    actions = ["start_selected", "stop_selected", "restart_selected", "delete_selected_containers",
               "list_sessions_selected"]
    change_form_template = "admin/waha/wahacontainer/change_form.html"
    change_list_template = "admin/waha/wahacontainer/change_list.html"

    def has_add_permission(self, request) -> bool:
        # Containers are created by waha.manager.ensure_container, never by hand.
        return False

    def get_queryset(self, request):
        unresolved = ~Q(state=AlertState.RESOLVED)
        alerts = (
            ContainerAlert.objects.filter(unresolved, container=OuterRef("pk"))
            .order_by().values("container").annotate(n=Count("pk")).values("n")
        )
        # The keys are never shown: not decrypted for every row.
        return super().get_queryset(request).defer("api_key", "webhook_key").annotate(
            _sessions=_count(WahaSession, container=OuterRef("pk")),
            _open_alerts=Coalesce(Subquery(alerts, output_field=IntegerField()), Value(0)),
        )

    def get_actions(self, request):
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # a row deleted without its container would leave an orphan
        return found

    # --- columns ---

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: WahaContainer) -> str:
        tone = {"running": "good", "stopped": "idle", "failed": "bad"}.get(obj.status, "busy")
        healthy = "" if obj.status != ContainerStatus.RUNNING or obj.healthy else " ⚠"
        return status_dot(f"{obj.get_status_display()}{healthy}", tone)

    @admin.display(description=_("sessions"), ordering="_sessions")
    def sessions_in_use(self, obj: WahaContainer) -> str:
        return f"{obj._sessions} / {obj.capacity}"

    @admin.display(description=_("node"), ordering="node_name")
    def on_node(self, obj: WahaContainer) -> str:
        """The Swarm node it is pinned to (runtime swarm); "—" on a single host."""
        return obj.node_name or "—"

    @admin.display(description=_("uptime"), ordering="started_at")
    def uptime(self, obj: WahaContainer) -> str:
        if obj.status != ContainerStatus.RUNNING or not obj.started_at:
            return "—"
        if timezone.now() - obj.started_at < timedelta(minutes=1):
            return gettext("less than a minute")  # (timesince says "0 minuto" in pt-BR)
        return timesince(obj.started_at, timezone.now(), depth=2)

    @admin.display(description=_("CPU"), ordering="last_cpu_percent")
    def cpu(self, obj: WahaContainer) -> str:
        return "—" if obj.last_cpu_percent is None else f"{number_format(obj.last_cpu_percent, 1)} %"

    @admin.display(description=_("RAM"), ordering="last_memory_bytes")
    def memory(self, obj: WahaContainer) -> str:
        if obj.last_memory_bytes is None:
            return "—"
        return f"{filesizeformat(obj.last_memory_bytes)} ({obj.last_memory_percent or 0:.0f} %)"

    @admin.display(description=_("open alerts"), ordering="_open_alerts")
    def open_alerts(self, obj: WahaContainer) -> str:
        if not obj._open_alerts:
            return "0"
        url = reverse("admin:waha_containeralert_changelist")
        return format_html(
            '<a href="{}?container__id__exact={}&amp;state__exact=open" class="ops-bad">{}</a>',
            url, obj.pk, obj._open_alerts,
        )

    # --- actions ---

    def _allowed(self, request: HttpRequest, action: ops.Action, obj=None) -> bool:
        check = {"view": self.has_view_permission, "change": self.has_change_permission,
                 "delete": self.has_delete_permission}[action.permission]
        return check(request, obj)

    def _act(self, request: HttpRequest, queryset, name: str, confirmed: bool, form: forms.Form | None = None):
        """Confirm (when destructive), enqueue one audited action per container, report the outcomes."""
        action = ops.ACTIONS[name]
        if not self._allowed(request, action):
            raise PermissionDenied
        containers = list(queryset)
        if action.confirm and not confirmed:
            return confirmation(
                request, self, title=_("%(action)s containers") % {"action": action.label},
                question=_("%(action)s these containers?") % {"action": action.label},
                consequences=self._consequences(name, containers),
                objects=[(str(c), reverse("admin:waha_wahacontainer_change", args=[c.pk])) for c in containers],
                hidden=[("action", f"{name}_selected" if name != "delete" else "delete_selected_containers"),
                        ("post", "yes"), *[(admin.helpers.ACTION_CHECKBOX_NAME, c.pk) for c in containers]],
                form=form, confirm_label=action.label,
                cancel_url=reverse("admin:waha_wahacontainer_changelist"),
            )
        options = form.cleaned_data if form is not None and form.is_valid() else {}
        report_entries(request, [ops.enqueue(c, name, actor=request.user, **options) for c in containers])
        return None

    @staticmethod
    def _consequences(name: str, containers: list[WahaContainer]) -> list[str]:
        sessions = sum(getattr(c, "_sessions", 0) for c in containers)
        return {
            "stop": [_("Their sessions stop: the tenants' chips cannot send or receive until started again."),
                     _("The health sweep leaves stopped containers alone.")],
            "restart": [_("Their sessions are interrupted for a few seconds and resumed.")],
            "delete": [
                ngettext("%(n)d session placed in them is deleted; its chip must be connected again.",
                         "%(n)d sessions placed in them are deleted; their chips must be connected again.",
                         sessions) % {"n": sessions},
                _("The data volume is kept unless you tick the box below."),
            ],
        }.get(name, [])

    @admin.action(description=_("Start the selected containers"))
    def start_selected(self, request, queryset):
        return self._act(request, queryset, "start", confirmed=True)

    @admin.action(description=_("Stop the selected containers…"))
    def stop_selected(self, request, queryset):
        return self._act(request, queryset, "stop", confirmed="post" in request.POST)

    @admin.action(description=_("Restart the selected containers…"))
    def restart_selected(self, request, queryset):
        return self._act(request, queryset, "restart", confirmed="post" in request.POST)

    @admin.action(description=_("Delete the selected containers…"))
    def delete_selected_containers(self, request, queryset):
        form = DeleteOptionsForm(request.POST if "post" in request.POST else None)
        return self._act(request, queryset, "delete", confirmed="post" in request.POST, form=form)

    @admin.action(description=_("List the sessions WAHA has in the selected containers"))
    def list_sessions_selected(self, request, queryset):
        return self._act(request, queryset, "list_sessions", confirmed=True)

    # --- extra pages ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("orphans/", wrap(self.orphans_view), name="waha_wahacontainer_orphans"),
            path("<int:pk>/action/<str:name>/", wrap(self.action_view), name="waha_wahacontainer_action"),
            path("<int:pk>/logs/", wrap(self.logs_view), name="waha_wahacontainer_logs"),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, pk: int, name: str) -> HttpResponse:
        """One container's action from its page: confirmation (destructive ones), then the outcome."""
        action = ops.ACTIONS.get(name)
        if action is None or action.internal:
            raise Http404
        container = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self._allowed(request, action, container):
            raise PermissionDenied
        page = reverse("admin:waha_wahacontainer_change", args=[pk])
        form = DeleteOptionsForm(request.POST if request.method == "POST" else None) if name == "delete" else None
        if request.method != "POST" or (action.confirm and "post" not in request.POST):
            if not action.confirm:
                return HttpResponseRedirect(page)  # a GET never changes anything
            return confirmation(
                request, self, title=_("%(action)s %(name)s") % {"action": action.label, "name": container},
                question=_("%(action)s this container?") % {"action": action.label},
                consequences=self._consequences(name, [container]),
                objects=[(str(container), page)], hidden=[("post", "yes")], form=form,
                confirm_label=action.label, cancel_url=page,
            )
        options = form.cleaned_data if form is not None and form.is_valid() else {}
        report_entries(request, [ops.enqueue(container, name, actor=request.user, **options)])
        if name == "delete":
            return HttpResponseRedirect(reverse("admin:waha_wahacontainer_changelist"))
        return HttpResponseRedirect(page)

    def delete_view(self, request, object_id, extra_context=None):
        # The admin's own delete would drop the row and leave the container running: an orphan.
        return HttpResponseRedirect(reverse("admin:waha_wahacontainer_action", args=[object_id, "delete"]))

    def orphans_view(self, request: HttpRequest) -> HttpResponse:
        """Clean up orphans: labelled containers without a row go, rows whose container is gone get one."""
        if not self.has_delete_permission(request):
            raise PermissionDenied
        back = reverse("admin:waha_wahacontainer_changelist")
        form = OrphanOptionsForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            report_entries(request, [ops.enqueue_orphan_cleanup(request.user, **form.cleaned_data)])
            return HttpResponseRedirect(back)
        known = ContainerAlert.objects.filter(rule="orphan").exclude(state=AlertState.RESOLVED)
        return confirmation(
            request, self, title=_("Clean up orphan containers"),
            question=_("Clean up orphan containers now?"),
            consequences=[
                _("Containers labelled for this WHAGO that have no row here are removed "
                  "(those younger than %(minutes)d minutes are left: they may be being created).")
                % {"minutes": settings.OPS_ORPHAN_GRACE_MINUTES},
                _("Containers whose row exists but the engine lost are created again."),
            ],
            objects=[(f"{alert.subject} — {alert.message}", "") for alert in known[:50]],
            objects_title=_("Orphans found by the last alert sweep"),
            hidden=[], form=form, confirm_label=_("Clean up"), cancel_url=back,
        )

    def logs_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The log tail fragment (htmx): asked to the worker, shown when it answered."""
        container = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, container):
            raise PermissionDenied
        try:
            tail = int(request.GET.get("tail", settings.OPS_LOG_TAIL_LINES))
        except ValueError:
            tail = settings.OPS_LOG_TAIL_LINES
        tail = max(1, min(tail, 5000))
        token = request.GET.get("token", "")
        tries = int(request.GET["try"]) if request.GET.get("try", "").isdigit() else 0
        if token:
            found = ops.fetched_logs(token, wait=1.0)
        else:
            token = ops.request_logs(container, tail)
            found = ops.fetched_logs(token, wait=settings.OPS_LOG_WAIT_SECONDS)
        context = {"container": container, "tail": tail, "token": token, "logs": found, "next_try": tries + 1,
                   "gave_up": found is None and tries >= 20, "url": reverse("admin:waha_wahacontainer_logs",
                                                                            args=[pk])}
        return TemplateResponse(request, "admin/waha/wahacontainer/_logs.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        container = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if container is not None:
            extra.update(
                show_save_and_add_another=False,
                actions=[a for a in ops.ACTIONS.values() if not a.internal and self._allowed(request, a, container)],
                tail_choices=TAIL_CHOICES,
                default_tail=settings.OPS_LOG_TAIL_LINES,
                chart=container_chart(ops.utilisation(7, container=container)),
                recent_entries=AuditLog.objects.filter(
                    target_type="waha.wahacontainer", target_id=str(container.pk)
                ).select_related("actor")[:10],
            )
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request, extra_context=None):
        extra = {"can_clean_orphans": self.has_delete_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra)


def container_chart(series: dict) -> dict:
    """Chart.js data of one container's CPU and memory (7 days, per hour)."""
    return {
        "labels": series["labels"],
        "datasets": [
            {"label": str(_("CPU % (mean)")), "data": series["cpu"], "axis": "y", "color": "#1565c0"},
            {"label": str(_("RAM (GB)")), "data": series["memory_gb"], "axis": "y1", "color": "#ef6c00"},
        ],
        "axes": {"y": str(_("CPU %")), "y1": str(_("GB"))},
    }


# --- external servers ----------------------------------------------------------------


class ExternalServerForm(forms.ModelForm):
    """Register a WAHA server: it must answer with the key given; what it can do is read from it."""

    url = forms.URLField(label=_("URL"), assume_scheme="https", max_length=200)

    key = forms.CharField(
        label=_("API key"), required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text=_("The server's WHATSAPP_API_KEY. Stored encrypted; leave empty to keep the current one."),
    )

    class Meta:
        model = ExternalServer
        fields = ["name", "url", "capacity"]
        help_texts = {
            "url": _("Where WHAGO reaches the server's API, e.g. https://waha.example.com.br"),
            "capacity": _("Sessions WHAGO may place on it (WAHA Core: always 1)."),
        }

    def clean(self):
        cleaned = super().clean()
        key = cleaned.get("key") or (self.instance.api_key if self.instance.pk else "")
        if not key:
            self.add_error("key", _("Give the server's API key."))
        if self.errors:
            return cleaned
        probe = ExternalServer(url=cleaned["url"], api_key=key, runtime="external")
        try:
            WahaClient(probe.base_url, key, retries=0, timeout=(3.05, 10)).ping()
            self.capabilities = read_capabilities(probe)
        except Unauthorized as exc:
            raise forms.ValidationError(_("The server refused this API key.")) from exc
        except WahaError as exc:
            raise forms.ValidationError(
                _("WHAGO could not use this WAHA server: %(error)s"), params={"error": str(exc)[:300]}
            ) from exc
        self.api_key = key
        return cleaned


@admin.register(ExternalServer)
class ExternalServerAdmin(ConsoleAdmin):
    """Operators register the WAHA servers they run (runtime "external"); WHAGO places sessions on them."""

    form = ExternalServerForm
    list_display = ["name", "url", "version", "engine", "whatsapp_engine", "sessions_in_use", "healthy",
                    "key_enforced"]
    readonly_fields = ["version", "engine", "whatsapp_engine", "key_enforced", "capabilities_at", "healthy",
                       "last_health_at", "last_error"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("api_key", "webhook_key").annotate(
            _sessions=_count(WahaSession, container=OuterRef("pk")))

    @admin.display(description=_("sessions"), ordering="_sessions")
    def sessions_in_use(self, obj: ExternalServer) -> str:
        return f"{obj._sessions} / {obj.capacity}"

    def has_delete_permission(self, request, obj=None) -> bool:
        # A server that holds sessions stays: its chips would lose their session silently.
        if obj is not None and obj.sessions.exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj: ExternalServer, form: ExternalServerForm, change: bool) -> None:
        obj.runtime, obj.tenant, obj.port, obj.image = "external", None, None, ""
        obj.runtime_id = f"external:{obj.name}"[:100]
        obj.api_key = form.api_key
        obj.status = ContainerStatus.RUNNING
        obj.mark_up()
        if not change:
            obj.started_at = timezone.now()
        super().save_model(request, obj, form, change)
        record_capabilities(obj, form.capabilities)


# --- sessions, events, samples ------------------------------------------------------


@admin.register(WahaSession)
class WahaSessionAdmin(BigTableAdmin):
    list_display = ["name", "tenant", "container", "status", "should_run", "me_id", "updated_at"]
    list_filter = ["status", "should_run"]
    list_select_related = ["tenant", "container"]
    search_fields = ["name", "me_id", "tenant__name"]
    readonly_fields = ["tenant", "container", "name", "remote_name", "status", "me_id", "me_push_name"]

    def has_add_permission(self, request):
        return False


class EventFilter(admin.SimpleListFilter):
    """The events WHAGO subscribes to (no DISTINCT over millions of rows)."""

    title = _("event")
    parameter_name = "event"

    def lookups(self, request, model_admin):
        return [(name, name) for name in manager.DEFAULT_EVENTS]

    def queryset(self, request, queryset):
        return queryset.filter(event=self.value()) if self.value() else queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(BigTableAdmin):
    list_display = ["event_id", "event", "session", "container", "received_at"]
    list_filter = [EventFilter]
    list_select_related = ["container"]
    search_fields = ["=event_id", "=session"]
    readonly_fields = ["tenant", "container", "event_id", "event", "session", "payload", "received_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(StatsSample)
class StatsSampleAdmin(BigTableAdmin):
    list_display = ["taken_at", "container", "cpu_percent", "memory", "memory_percent", "sessions"]
    list_filter = [("taken_at", admin.DateFieldListFilter)]
    list_select_related = ["container"]
    search_fields = ["=container__name"]
    readonly_fields = ["container", "cpu_percent", "memory", "memory_percent", "sessions", "taken_at"]

    @admin.display(description=_("memory"), ordering="memory_bytes")
    def memory(self, obj: StatsSample) -> str:
        return filesizeformat(obj.memory_bytes)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- alerts ----------------------------------------------------------------------------


@admin.register(ContainerAlert)
class ContainerAlertAdmin(ConsoleAdmin):
    list_display = ["opened_at", "subject", "rule", "state_badge", "value", "message", "acknowledged",
                    "resolved_at"]
    list_filter = ["state", "rule"]
    list_select_related = ["acknowledged_by"]
    search_fields = ["subject", "message"]
    readonly_fields = ["container", "subject", "rule", "state", "message", "value", "opened_at", "acknowledged_at",
                       "acknowledged_by", "resolved_at"]
    actions = ["acknowledge"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj: ContainerAlert) -> str:
        tone = {"open": "bad", "acknowledged": "warn", "resolved": "good"}[obj.state]
        return status_dot(obj.get_state_display(), tone)

    @admin.display(description=_("acknowledged"), ordering="acknowledged_at")
    def acknowledged(self, obj: ContainerAlert) -> str:
        if not obj.acknowledged_at:
            return "—"
        who = obj.acknowledged_by.email if obj.acknowledged_by else "?"
        return f"{timezone.localtime(obj.acknowledged_at):%d/%m %H:%M} ({who})"

    @admin.action(description=_("Acknowledge the selected alerts"), permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset) -> None:
        done = 0
        for alert in queryset.filter(state=AlertState.OPEN).select_related("container"):
            changed = ContainerAlert.objects.filter(pk=alert.pk, state=AlertState.OPEN).update(
                state=AlertState.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=request.user
            )
            if changed:
                done += 1
                audit.record("alert.acknowledge", actor=request.user, target=alert,
                             tenant=alert.container.tenant_id if alert.container_id else None,
                             status=AuditLog.Status.SUCCEEDED, result=alert.message[:200])
        self.message_user(
            request, ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", done) % {"n": done}
        )

