"""The operators' console for billing: plans, subscriptions, payments, ledger, gateway events."""
import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from whago.admin_tools import ConsoleAdmin

from . import gateways
from .models import CreditLedger, GatewayEvent, Payment, Plan, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "price_brl", "max_chips", "messages_per_day", "messages_per_month",
                    "max_active_campaigns", "api_access", "container_memory_mb", "container_cpus", "is_public"]
    list_editable = ["is_public"]

    def changelist_view(self, request, extra_context=None):
        # Which gateways the environment configures, where operators look for them.
        configured, missing = _("configured"), _("not configured")
        states = [
            f"{cls.label}: {configured if cls.is_configured() else missing}" for cls in gateways.GATEWAYS.values()
        ]
        messages.info(request, _("Payment gateways (credentials from the environment): %(states)s")
                      % {"states": "; ".join(states)})
        return super().changelist_view(request, extra_context)


@admin.register(Subscription)
class SubscriptionAdmin(ConsoleAdmin):
    list_display = ["tenant", "plan", "status", "gateway", "current_period_end", "started_at"]
    list_filter = ["plan", "status", "gateway"]
    list_select_related = ["tenant", "plan"]
    search_fields = ["tenant__name", "external_id", "external_customer_id"]
    readonly_fields = ["started_at", "updated_at"]


@admin.register(Payment)
class PaymentAdmin(ConsoleAdmin):
    list_display = ["created_at", "tenant", "kind", "plan", "credits", "amount", "currency", "gateway", "method",
                    "status", "paid_at"]
    list_filter = ["status", "gateway", "kind", "method"]
    list_select_related = ["tenant", "plan"]
    search_fields = ["tenant__name", "reference", "external_id", "external_payment_id"]
    readonly_fields = ["reference", "created_at", "paid_at", "checkout_url", "pix_qr_code", "pix_qr_code_base64",
                       "created_by"]
    date_hierarchy = "created_at"


@admin.register(CreditLedger)
class CreditLedgerAdmin(ConsoleAdmin):
    """Append-only: operators add adjustments, never edit or delete entries."""

    list_display = ["created_at", "tenant", "amount", "reason", "payment", "note"]
    list_filter = ["reason"]
    list_select_related = ["tenant", "payment"]
    search_fields = ["tenant__name", "note"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "amount", "reason", "payment", "note", "created_at"] if obj else ["created_at"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(GatewayEvent)
class GatewayEventAdmin(ConsoleAdmin):
    list_display = ["received_at", "gateway", "event_type", "event_id", "result", "deliveries", "processed_at",
                    "payment"]
    list_filter = ["gateway", "result", "event_type"]
    list_select_related = ["payment"]  # the payment column, without a query per row
    search_fields = ["event_id", "event_type", "detail"]
    readonly_fields = ["gateway", "event_id", "event_type", "pretty_payload", "received_at", "processed_at", "result",
                       "detail", "deliveries", "payment"]
    exclude = ["payload"]

    @admin.display(description=_("payload"))
    def pretty_payload(self, obj: GatewayEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    def has_add_permission(self, request):
        return False
