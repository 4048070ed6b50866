"""Admin for accounts and tenants, and the operators' audit log.

The tenant list's columns from other apps (plan, chips, usage, payments) are added by
whago.console.admin, which replaces TenantAdmin with a subclass: whago imports no app.
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_celery_beat.admin import CrontabScheduleAdmin, PeriodicTaskAdmin
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import services
from .admin_tools import BigTableAdmin, ConsoleAdmin, FastCheckboxMixin, TranslatedPermissionsMixin, status_dot
from .models import AuditLog, Invitation, Membership, SuspensionKind, Tenant, User, WorkerHeartbeat


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class SuspendForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (kept in the audit log)"), max_length=300, required=False,
        widget=forms.TextInput(attrs={"size": 60}),
    )
    kind = forms.ChoiceField(
        label=_("Kind"), choices=SuspensionKind.choices, initial=SuspensionKind.OTHER, required=False,
        widget=forms.RadioSelect,
        help_text=_("A suspension for non-payment is lifted automatically when a payment is confirmed."),
    )


@admin.register(Tenant)
class TenantAdmin(ConsoleAdmin):
    list_display = ["name", "slug", "state", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["is_active", "suspended_at", "suspension_reason", "suspension_kind", "created_at"]
    fields = ["name", "slug", "is_active", "suspended_at", "suspension_reason", "suspension_kind", "created_at",
              "cnpj", "address_street", "address_district", "address_city", "address_state", "address_postal_code"]
    inlines = [MembershipInline]
    actions = ["suspend_selected", "reactivate_selected"]
    change_form_template = "admin/whago/tenant/change_form.html"

    @admin.display(description=_("state"), ordering="is_active")
    def state(self, obj: Tenant) -> str:
        if obj.is_active:
            return status_dot(_("active"), "good")
        return status_dot(_("suspended"), "bad", title=obj.suspension_reason)

    # --- suspension ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/suspend/", wrap(self.suspend_view), name="whago_tenant_suspend"),
            path("<int:pk>/reactivate/", wrap(self.reactivate_view), name="whago_tenant_reactivate"),
            *super().get_urls(),
        ]

    def _suspend(self, request: HttpRequest, tenants: list[Tenant], reason: str, kind: str) -> None:
        done = [t for t in tenants if services.suspend_tenant(
            t, by=request.user, reason=reason, kind=kind or SuspensionKind.OTHER)]
        if done:
            self.message_user(request, ngettext(
                "%(names)s suspended: its members see the suspension page, its API keys are refused and its "
                "sessions are being stopped by the worker (see the audit log).",
                "%(names)s suspended: their members see the suspension page, their API keys are refused and their "
                "sessions are being stopped by the worker (see the audit log).", len(done),
            ) % {"names": ", ".join(t.name for t in done)}, messages.SUCCESS)
        skipped = len(tenants) - len(done)
        if skipped:
            self.message_user(request, ngettext("%(n)d tenant was already suspended.",
                                                "%(n)d tenants were already suspended.", skipped) % {"n": skipped},
                              messages.WARNING)

    def _reactivate(self, request: HttpRequest, tenants: list[Tenant]) -> None:
        done = [t for t in tenants if services.reactivate_tenant(t, by=request.user)]
        if done:
            self.message_user(request, ngettext(
                "%(names)s reactivated: its sessions are being started again by the worker.",
                "%(names)s reactivated: their sessions are being started again by the worker.", len(done),
            ) % {"names": ", ".join(t.name for t in done)}, messages.SUCCESS)

    def _suspend_page(self, request: HttpRequest, tenants: list[Tenant], form: SuspendForm, hidden: list,
                      cancel_url: str) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": _("Suspend tenants"), "question": _("Suspend these tenants?"),
            "consequences": [
                _("Their members can no longer use the portal: they see a page saying the account is suspended."),
                _("Their API keys are refused (401)."),
                _("Their WhatsApp sessions and containers are stopped by the worker."),
                _("Nothing is deleted: chips, messages, contacts and payments are kept, and reactivating brings "
                  "the sessions back."),
            ],
            "objects": [(t.name, reverse("admin:whago_tenant_change", args=[t.pk])) for t in tenants],
            "hidden": hidden, "form": form, "confirm_label": _("Suspend"), "cancel_url": cancel_url,
        }
        return TemplateResponse(request, "admin/ops/confirm.html", context)

    @admin.action(description=_("Suspend the selected tenants…"), permissions=["change"])
    def suspend_selected(self, request: HttpRequest, queryset):
        tenants = list(queryset)
        form = SuspendForm(request.POST if "post" in request.POST else None)
        if "post" in request.POST and form.is_valid():
            self._suspend(request, tenants, form.cleaned_data["reason"], form.cleaned_data["kind"])
            return None
        hidden = [("action", "suspend_selected"), ("post", "yes"),
                  *[(admin.helpers.ACTION_CHECKBOX_NAME, t.pk) for t in tenants]]
        return self._suspend_page(request, tenants, form, hidden, reverse("admin:whago_tenant_changelist"))

    @admin.action(description=_("Reactivate the selected tenants"), permissions=["change"])
    def reactivate_selected(self, request: HttpRequest, queryset) -> None:
        self._reactivate(request, list(queryset))

    def suspend_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        tenant = get_object_or_404(Tenant, pk=pk)
        if not self.has_change_permission(request, tenant):
            raise PermissionDenied
        page = reverse("admin:whago_tenant_change", args=[pk])
        form = SuspendForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            self._suspend(request, [tenant], form.cleaned_data["reason"], form.cleaned_data["kind"])
            return HttpResponseRedirect(page)
        return self._suspend_page(request, [tenant], form, [], page)

    def reactivate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        tenant = get_object_or_404(Tenant, pk=pk)
        if not self.has_change_permission(request, tenant):
            raise PermissionDenied
        if request.method == "POST":
            self._reactivate(request, [tenant])
        return HttpResponseRedirect(reverse("admin:whago_tenant_change", args=[pk]))


@admin.register(User)
class UserAdmin(TranslatedPermissionsMixin, FastCheckboxMixin, BaseUserAdmin):
    list_per_page = 25
    show_full_result_count = False
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Personal info"), {"fields": ["full_name"]}),
        (_("Permissions"), {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        (_("Important dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(TranslatedPermissionsMixin, FastCheckboxMixin, BaseGroupAdmin):
    pass


@admin.register(Invitation)
class InvitationAdmin(ConsoleAdmin):
    list_display = ["email", "tenant", "role", "created_at", "accepted_at"]
    list_select_related = ["tenant"]
    search_fields = ["email", "tenant__name"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ConsoleAdmin):
    list_display = ["token", "requested_at", "answered_at", "worker"]


@admin.register(Membership)
class MembershipAdmin(ConsoleAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__email", "tenant__name"]


class ActionKindFilter(admin.SimpleListFilter):
    """Kinds of actions by their prefix (no DISTINCT over a log that only grows)."""

    title = _("action")
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("container.", _("Container actions")), ("orphans.", _("Orphan cleanups")),
                ("tenant.", _("Tenant suspensions and reactivations")), ("alert.", _("Alert acknowledgements"))]

    def queryset(self, request, queryset):
        return queryset.filter(action__startswith=self.value()) if self.value() else queryset


@admin.register(AuditLog)
class AuditLogAdmin(BigTableAdmin):
    """Read-only: what operators did, and how it ended."""

    list_display = ["created_at", "actor_email", "action_name", "target", "tenant", "status_badge", "outcome",
                    "took"]
    list_filter = ["status", ActionKindFilter]
    list_select_related = ["tenant"]
    search_fields = ["actor_email", "=action", "target_repr", "=target_id", "tenant__name"]
    fields = ["created_at", "finished_at", "actor", "actor_email", "action", "target_type", "target_id",
              "target_repr", "tenant", "status", "result", "error", "detail"]
    readonly_fields = fields

    @admin.display(description=_("action"), ordering="action")
    def action_name(self, obj: AuditLog) -> str:
        return obj.action_name

    @admin.display(description=_("target"), ordering="target_repr")
    def target(self, obj: AuditLog) -> str:
        if not obj.target_type or not obj.target_id:
            return obj.target_repr or "—"
        app_label, _dot, model_name = obj.target_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.target_id])
        except NoReverseMatch:
            return obj.target_repr
        return format_html('<a href="{}">{}</a>', url, obj.target_repr)

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: AuditLog) -> str:
        tone = {"running": "busy", "succeeded": "good", "failed": "bad"}[obj.status]
        return status_dot(obj.get_status_display(), tone)

    @admin.display(description=_("result"))
    def outcome(self, obj: AuditLog) -> str:
        text = obj.error or obj.result
        return text if len(text) <= 160 else text[:159] + "…"

    @admin.display(description=_("took"))
    def took(self, obj: AuditLog) -> str:
        duration = obj.duration
        return "—" if duration is None else f"{duration.total_seconds():.1f} s"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def local_datetime(moment) -> str:
    """A moment as the console shows dates: local time, the language's format."""
    return formats.localize(timezone.template_localtime(moment)) if moment else "—"


class AuthenticatorForm(forms.ModelForm):
    class Meta:
        model = TOTPDevice
        fields = ["user", "name", "confirmed"]
        labels = {"user": _("Operator"), "name": _("Name"), "confirmed": _("Confirmed")}
        help_texts = {"user": "", "name": _("To tell the operator's authenticators apart."),
                      "confirmed": _("Only a confirmed authenticator is accepted at the login.")}


class ConfirmedFilter(admin.SimpleListFilter):
    title = _("confirmed")
    parameter_name = "confirmed"

    def lookups(self, request, model_admin):
        return [("1", _("Yes")), ("0", _("No"))]

    def queryset(self, request, queryset):
        return queryset.filter(confirmed=self.value() == "1") if self.value() in ("0", "1") else queryset


# django-otp's own admin for the operators' authenticators speaks English (plain strings, no gettext).
admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class AuthenticatorAdmin(TOTPDeviceAdmin):
    """The operators' authenticator apps (second factor), made by `manage.py operator_totp`."""

    form = AuthenticatorForm
    list_display = ["user", "name", "created", "last_used", "confirmed"]
    list_filter = [ConfirmedFilter]
    search_help_text = _("Search by the operator's e-mail")
    readonly_fields = ["created", "last_used", "qrcode_link"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ["user", "name", "confirmed"]})]
        if obj is not None:
            fieldsets.append((_("Dates"), {"fields": ["created", "last_used"]}))
            if "qrcode_link" in self.get_list_display(request):
                fieldsets.append((None, {"fields": ["qrcode_link"]}))
        return fieldsets

    def get_fields(self, request, obj=None):
        return [field for _name, options in self.get_fieldsets(request, obj) for field in options["fields"]]

    # (A callable's value is shown as str() on the change form: formatted here, in local time.)
    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, device: TOTPDevice) -> str:
        return local_datetime(device.created_at)

    @admin.display(description=_("last used at"), ordering="last_used_at")
    def last_used(self, device: TOTPDevice) -> str:
        return local_datetime(device.last_used_at)

    @admin.display(description=_("QR code"))
    def qrcode_link(self, device: TOTPDevice) -> str:
        return super().qrcode_link(device)


class TaskNameFilter(admin.AllValuesFieldListFilter):
    """django-celery-beat's task filter, titled in the console's language (its field's name is a plain string)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("task")


# django-celery-beat's lists name some columns with plain (untranslatable) strings.
admin.site.unregister([PeriodicTask, CrontabSchedule])


@admin.register(PeriodicTask)
class ScheduledTaskAdmin(PeriodicTaskAdmin):
    list_display = ["name", "enabled", "schedule", "start_time", "last_run_at", "one_off"]
    list_filter = ["enabled", "one_off", ("task", TaskNameFilter), "start_time", "last_run_at"]

    @admin.display(description=_("Schedule"))
    def schedule(self, task: PeriodicTask) -> str:
        return str(task.scheduler)


@admin.register(CrontabSchedule)
class CronScheduleAdmin(CrontabScheduleAdmin):
    list_display = ["__str__", "in_words"]
    fields = ["in_words", "minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone"]
    readonly_fields = ["in_words"]

    @admin.display(description=_("Human readable"))
    def in_words(self, schedule: CrontabSchedule) -> str:
        return schedule.human_readable
