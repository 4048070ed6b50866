"""Basic admin pages of the waha app (the operators' console proper comes later)."""
from django.contrib import admin

from .models import ContainerAlert, StatsSample, WahaContainer, WahaSession, WebhookEvent


class WahaSessionInline(admin.TabularInline):
    model = WahaSession
    extra = 0
    fields = ["name", "remote_name", "status", "should_run", "me_id", "updated_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(WahaContainer)
class WahaContainerAdmin(admin.ModelAdmin):
    list_display = [
        "name", "tenant", "runtime", "engine", "port", "status", "healthy", "last_health_at",
        "last_cpu_percent", "last_memory_percent", "capacity",
    ]
    list_filter = ["status", "healthy", "runtime", "engine"]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__name", "runtime_id"]
    readonly_fields = [
        "tenant", "name", "runtime", "runtime_id", "port", "image", "engine", "status", "healthy",
        "last_health_at", "last_error", "down_since", "restart_count", "last_cpu_percent", "last_memory_bytes",
        "last_memory_percent", "last_stats_at", "created_at", "updated_at",
    ]
    fields = [*readonly_fields[:8], "capacity", *readonly_fields[8:]]
    inlines = [WahaSessionInline]

    def has_add_permission(self, request):
        # Containers are created by waha.manager.ensure_container, never by hand.
        return False


@admin.register(WahaSession)
class WahaSessionAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "container", "status", "should_run", "me_id", "updated_at"]
    list_filter = ["status", "should_run"]
    list_select_related = ["tenant", "container"]
    search_fields = ["name", "me_id", "tenant__name"]
    readonly_fields = ["tenant", "container", "name", "remote_name", "status", "me_id", "me_push_name"]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "event", "session", "container", "received_at"]
    list_filter = ["event"]
    list_select_related = ["container"]
    search_fields = ["event_id", "session"]
    readonly_fields = ["tenant", "container", "event_id", "event", "session", "payload", "received_at"]

    def has_add_permission(self, request):
        return False


@admin.register(ContainerAlert)
class ContainerAlertAdmin(admin.ModelAdmin):
    list_display = ["subject", "rule", "state", "value", "opened_at", "resolved_at"]
    list_filter = ["state", "rule"]
    search_fields = ["subject", "message"]
    readonly_fields = ["container", "subject", "rule", "message", "value", "opened_at", "resolved_at"]


@admin.register(StatsSample)
class StatsSampleAdmin(admin.ModelAdmin):
    list_display = ["container", "cpu_percent", "memory_bytes", "memory_percent", "taken_at"]
    list_select_related = ["container"]
    date_hierarchy = "taken_at"
    readonly_fields = ["container", "cpu_percent", "memory_bytes", "memory_percent", "taken_at"]
