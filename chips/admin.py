"""Operators' view of chips and messages (read-only: tenants manage them in the portal).

Written by the ops console helper for the admin's scale requirement (10,000 chips,
1,000,000 messages): related rows selected in the same query, no full count, estimated
pagination, filters on choices only (a filter listing every chip would be as big as the table).
"""
from django.contrib import admin

from whago.admin_tools import BigTableAdmin

from .models import Campaign, Chip, Contact, Message


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Chip)
class ChipAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["alias", "tenant", "status", "phone", "session_name", "created_at", "deleted_at"]
    list_filter = ["status"]
    list_select_related = ["tenant"]
    search_fields = ["alias", "phone", "session_name", "tenant__name"]

    def get_queryset(self, request):
        # Operators see deleted chips too (their messages are kept).
        return Chip.all_objects.select_related("tenant")


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["created_at", "tenant", "chip", "direction", "peer", "kind", "status", "source"]
    list_filter = ["direction", "status", "kind"]
    list_select_related = ["tenant", "chip"]
    search_fields = ["=peer", "=waha_id"]
    raw_id_fields = ["chip", "reservation"]


# --- contacts and campaigns (read-only for operators: tenants manage them in the portal) -------------


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["name", "tenant", "status", "pace_per_minute", "created_at", "started_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["tenant"]
    search_fields = ["name", "tenant__name"]


@admin.register(Contact)
class ContactAdmin(ReadOnlyMixin, BigTableAdmin):
    list_display = ["phone", "name", "tenant", "consent_source", "consent_at", "unsubscribed_at"]
    list_select_related = ["tenant"]
    search_fields = ["=phone", "tenant__name"]
    exclude = ["lists"]
