"""Operators' console for proxies: providers, static lists, assignments, health history, alerts."""
from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from whago.admin_tools import status_dot

from . import services
from .models import Proxy, ProxyAlert, ProxyAssignment, ProxyCheck, ProxyProvider


class WriteOnlyPasswordForm(forms.ModelForm):
    """The password is never sent back to the browser; left blank it keeps the stored one."""

    password = forms.CharField(
        label=_("password"), required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(label=_("Remove the stored password"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Keep the clear text out of the form entirely (initial values can end up in HTML).
        self.initial.pop("password", None)
        stored = bool(self.instance.pk and self.instance.password)
        self.fields["password"].help_text = (
            _("A password is stored. Type a new one to replace it; leave blank to keep it.")
            if stored else _("No password stored.")
        )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_password"):
            cleaned["password"] = ""
        elif not cleaned.get("password") and self.instance.pk:
            cleaned["password"] = self.instance.password  # still the stored value: the form is not applied yet
        return cleaned


class ProviderForm(WriteOnlyPasswordForm):
    class Meta:
        model = ProxyProvider
        fields = ["name", "kind", "scheme", "host", "port", "username", "password", "clear_password",
                  "username_template", "country", "priority", "is_active"]


class ProxyForm(WriteOnlyPasswordForm):
    class Meta:
        model = Proxy
        fields = ["provider", "host", "port", "username", "password", "clear_password", "is_active"]


def _no_provider_context(extra_context: dict | None) -> dict:
    return {**(extra_context or {}), "proxies_configured": services.providers_configured()}


def _health_badge(obj) -> str:
    if obj.last_check is None:
        return format_html('<span title="{}">—</span>', _("not checked yet"))
    if obj.healthy:
        return status_dot(_("healthy"), "good")
    return status_dot(_("unhealthy"), "bad")


def _active_assignments_link(count: int, **filters) -> str:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    url = reverse("admin:proxies_proxyassignment_changelist")
    return format_html('<a href="{}?{}&amp;active=yes">{}</a>', url, query, count)


def _report_checks(modeladmin, request, checks: list[ProxyCheck]) -> None:
    failed = [c for c in checks if not c.ok]
    for check in failed:
        modeladmin.message_user(
            request, f"{check.proxy or check.provider}: {check.get_outcome_display()} — {check.detail}",
            messages.WARNING,
        )
    ok = len(checks) - len(failed)
    modeladmin.message_user(request, ngettext("%(n)d check passed.", "%(n)d checks passed.", ok) % {"n": ok})
    moved, stranded = services.evacuate()
    if moved or stranded:
        modeladmin.message_user(
            request, _("%(moved)d session(s) moved, %(stranded)d without a healthy proxy.")
            % {"moved": moved, "stranded": stranded}, messages.WARNING,
        )


@admin.register(ProxyProvider)
class ProxyProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "scheme", "gateway_endpoint", "country", "priority", "is_active", "health",
                    "proxy_count", "assignment_count"]
    list_filter = ["kind", "is_active", "scheme"]
    search_fields = ["name", "host"]
    readonly_fields = ["healthy", "last_check", "last_ok", "last_outcome", "latency_ms", "consecutive_failures"]
    actions = ["check_now"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "scheme", "country", "priority", "is_active"]}),
        (_("Gateway"), {"fields": ["host", "port", "username", "password", "clear_password", "username_template"],
                        "description": _("For rotating gateways. Each chip gets its own sticky session.")}),
        (_("Health (gateways)"), {"fields": readonly_fields}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _proxies=Count("proxies", distinct=True),
            _assignments=Count("assignments", filter=Q(assignments__released_at__isnull=True), distinct=True),
        )

    @admin.display(description=_("gateway"))
    def gateway_endpoint(self, obj: ProxyProvider) -> str:
        return obj.endpoint or "—"

    @admin.display(description=_("health"))
    def health(self, obj: ProxyProvider) -> str:
        return _health_badge(obj) if obj.is_gateway else "—"

    @admin.display(description=_("proxies"), ordering="_proxies")
    def proxy_count(self, obj: ProxyProvider) -> str:
        if obj.is_gateway:
            return "—"
        url = reverse("admin:proxies_proxy_changelist")
        return format_html('<a href="{}?provider__id__exact={}">{}</a>', url, obj.pk, obj._proxies)

    @admin.display(description=_("active sessions"), ordering="_assignments")
    def assignment_count(self, obj: ProxyProvider) -> str:
        return _active_assignments_link(obj._assignments, provider__id__exact=obj.pk)

    @admin.action(description=_("Check now"))
    def check_now(self, request: HttpRequest, queryset) -> None:
        checks = []
        for provider in queryset:
            if provider.is_gateway:
                checks.append(services.check_now(provider))
            else:
                checks.extend(services.check_now(provider, proxy) for proxy in provider.proxies.filter(is_active=True))
        _report_checks(self, request, checks)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, _no_provider_context(extra_context))


class ActiveAssignmentInline(admin.TabularInline):
    model = ProxyAssignment
    verbose_name_plural = _("active sessions on this proxy")
    fields = ["session_name", "tenant", "masked_session", "created_at", "rotated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).filter(released_at__isnull=True).select_related("tenant")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("sticky session id"))
    def masked_session(self, obj: ProxyAssignment) -> str:
        return obj.masked_session_id


class ImportForm(forms.Form):
    provider = forms.ModelChoiceField(
        label=_("static list"), queryset=ProxyProvider.objects.filter(kind=ProxyProvider.Kind.STATIC),
    )
    lines = forms.CharField(
        label=_("proxies"), strip=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 80, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_("One proxy per line: host:port or host:port:user:password. Lines starting with # are ignored."),
    )


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    form = ProxyForm
    list_display = ["__str__", "provider", "is_active", "health", "latency_ms", "consecutive_failures",
                    "last_check", "assignment_count", "history"]
    list_filter = ["provider", "healthy", "is_active", "last_outcome"]
    search_fields = ["host"]
    list_select_related = ["provider"]
    readonly_fields = ["healthy", "last_check", "last_ok", "last_outcome", "latency_ms", "consecutive_failures"]
    fieldsets = [
        (None, {"fields": ["provider", "host", "port", "username", "password", "clear_password", "is_active"]}),
        (_("Health"), {"fields": readonly_fields}),
    ]
    inlines = [ActiveAssignmentInline]
    actions = ["check_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _assignments=Count("assignments", filter=Q(assignments__released_at__isnull=True))
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "provider":
            kwargs["queryset"] = ProxyProvider.objects.filter(kind=ProxyProvider.Kind.STATIC)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("health"), ordering="healthy")
    def health(self, obj: Proxy) -> str:
        return _health_badge(obj)

    @admin.display(description=_("active sessions"), ordering="_assignments")
    def assignment_count(self, obj: Proxy) -> str:
        return _active_assignments_link(obj._assignments, proxy__id__exact=obj.pk)

    @admin.display(description=_("history"))
    def history(self, obj: Proxy) -> str:
        url = reverse("admin:proxies_proxycheck_changelist")
        return format_html('<a href="{}?proxy__id__exact={}">{}</a>', url, obj.pk, _("checks"))

    @admin.action(description=_("Check now"))
    def check_now(self, request: HttpRequest, queryset) -> None:
        _report_checks(self, request, [services.check_now(proxy.provider, proxy) for proxy in queryset])

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="proxies_proxy_import"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, _no_provider_context(extra_context))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Paste a static list; good lines are saved, bad ones reported with line number and reason."""
        if not self.has_add_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        report = None
        if request.method == "POST":
            form = ImportForm(request.POST)
            if form.is_valid():
                report = services.import_static_list(form.cleaned_data["provider"], form.cleaned_data["lines"])
                level = messages.WARNING if report.errors else messages.SUCCESS
                self.message_user(request, _(
                    "%(created)d created, %(updated)d updated, %(unchanged)d unchanged, %(bad)d bad line(s)."
                ) % {"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
                     "bad": len(report.errors)}, level)
                # A fresh form: the pasted text holds passwords and is never sent back.
                form = ImportForm(initial={"provider": form.cleaned_data["provider"]})
        else:
            form = ImportForm(initial={"provider": request.GET.get("provider")})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Import a static list of proxies"),
            "form": form,
            "report": report,
            "has_static_list": ProxyProvider.objects.filter(kind=ProxyProvider.Kind.STATIC).exists(),
        }
        return TemplateResponse(request, "admin/proxies/proxy/import.html", context)


class ActiveFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", _("active")), ("no", _("released"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(released_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(released_at__isnull=False)
        return queryset


@admin.register(ProxyAssignment)
class ProxyAssignmentAdmin(admin.ModelAdmin):
    list_display = ["session_name", "tenant", "provider", "proxy", "masked_session", "created_at", "rotated_at",
                    "rotations", "released_at"]
    list_filter = [ActiveFilter, "provider", ("proxy", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant", "provider", "proxy"]
    search_fields = ["session_name", "tenant__name"]
    fields = ["session_name", "tenant", "provider", "proxy", "masked_session", "created_at", "rotated_at",
              "rotations", "released_at"]
    readonly_fields = fields
    actions = ["rotate"]

    @admin.display(description=_("sticky session id"))
    def masked_session(self, obj: ProxyAssignment) -> str:
        return obj.masked_session_id

    def has_add_permission(self, request) -> bool:
        return False  # assignments are made by chips, not by hand

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # released, never deleted: the history stays

    @admin.action(description=_("Rotate: new sticky session or another proxy"))
    def rotate(self, request: HttpRequest, queryset) -> None:
        done = 0
        for assignment in queryset.filter(released_at__isnull=True):
            try:
                services.rotate(assignment)
                done += 1
            except services.ProxyUnavailable as exc:
                self.message_user(request, f"{assignment.session_name}: {exc}", messages.WARNING)
        self.message_user(request, ngettext("%(n)d session rotated.", "%(n)d sessions rotated.", done) % {"n": done})


@admin.register(ProxyCheck)
class ProxyCheckAdmin(admin.ModelAdmin):
    list_display = ["checked_at", "provider", "proxy", "outcome", "latency_ms", "detail"]
    list_filter = ["outcome", "provider", ("proxy", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["provider", "proxy"]
    date_hierarchy = "checked_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class OpenFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", _("open")), ("no", _("resolved"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(ProxyAlert)
class ProxyAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "provider", "proxy", "message", "resolved_at"]
    list_filter = [OpenFilter, "kind", "provider"]
    list_select_related = ["provider", "proxy"]
    readonly_fields = ["kind", "provider", "proxy", "message", "created_at", "resolved_at"]
    actions = ["resolve"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Mark as resolved"))
    def resolve(self, request: HttpRequest, queryset) -> None:
        count = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        self.message_user(request, ngettext("%(n)d alert resolved.", "%(n)d alerts resolved.", count) % {"n": count})
