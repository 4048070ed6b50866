from django.contrib import admin

from .models import Plan, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "price_brl", "max_chips", "messages_per_day", "messages_per_month", "is_public"]
    list_editable = ["is_public"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["tenant", "plan", "status", "started_at"]
    list_filter = ["plan", "status"]
    list_select_related = ["tenant", "plan"]
    search_fields = ["tenant__name"]
