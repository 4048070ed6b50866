"""The tenant list as operators see it: what the other apps know about each tenant.

whago's TenantAdmin (suspension, company data, members) is replaced by a subclass with four more
columns — plan, chips, messages this month, payments received — each a correlated subquery on the
app's own model, so the list costs the same few queries however many tenants, chips and payments
there are.
"""
from django.contrib import admin
from django.db.models import Count, DecimalField, IntegerField, Model, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from billing.models import Gateway, Payment, Subscription, UsageCounter
from chips.models import Chip
from whago import admin as whago_admin
from whago.models import Tenant

# Payments through these gateways are money; the sandbox gateway's are tests.
REAL_GATEWAYS = [gateway for gateway in Gateway.values if gateway != Gateway.SANDBOX]


def _per_tenant(model: type[Model], value, **filters) -> Subquery:
    """One value per tenant row from another app's table (a correlated subquery, no join)."""
    rows = model._base_manager.filter(tenant=OuterRef("pk"), **filters).order_by().values("tenant")
    return Subquery(rows.annotate(v=value).values("v"))


class TenantAdmin(whago_admin.TenantAdmin):
    list_display = ["name", "slug", "state", "plan", "chips", "usage", "payments", "created_at"]

    def get_queryset(self, request):
        month = timezone.localdate().replace(day=1)
        money = DecimalField(max_digits=14, decimal_places=2)
        subscription = Subscription._base_manager.filter(tenant=OuterRef("pk"))
        return super().get_queryset(request).annotate(
            _plan=Subquery(subscription.values("plan__name")),
            _quota=Subquery(subscription.values("plan__messages_per_month")),
            _chips=Coalesce(_per_tenant(Chip, Count("pk"), deleted_at__isnull=True), Value(0),
                            output_field=IntegerField()),
            _used=Coalesce(_per_tenant(UsageCounter, Sum("used"), period=UsageCounter.Period.MONTH, starts_on=month),
                           Value(0), output_field=IntegerField()),
            # Paid for real: the sandbox gateway's test payments are left out.
            _paid=Coalesce(_per_tenant(Payment, Sum("amount"), status=Payment.Status.PAID, gateway__in=REAL_GATEWAYS),
                           Value(0), output_field=money),
            _payments=Coalesce(_per_tenant(Payment, Count("pk"), status=Payment.Status.PAID,
                                           gateway__in=REAL_GATEWAYS),
                               Value(0), output_field=IntegerField()),
        )

    @admin.display(description=_("plan"), ordering="_plan")
    def plan(self, obj: Tenant) -> str:
        return obj._plan or "—"

    @admin.display(description=_("chips"), ordering="_chips")
    def chips(self, obj: Tenant) -> str:
        url = self._changelist_url("chips", "chip")
        return format_html('<a href="{}?tenant__id__exact={}">{}</a>', url, obj.pk, obj._chips) if url else obj._chips

    @admin.display(description=_("messages this month"), ordering="_used")
    def usage(self, obj: Tenant) -> str:
        if obj._quota is None:
            return number_format(obj._used)
        return f"{number_format(obj._used)} / {number_format(obj._quota)}"

    @admin.display(description=_("payments received"), ordering="_paid")
    def payments(self, obj: Tenant) -> str:
        label = ngettext("%(n)d paid, R$ %(total)s", "%(n)d paid, R$ %(total)s", obj._payments) % {
            "n": obj._payments, "total": number_format(obj._paid, 2, force_grouping=True)
        }
        url = self._changelist_url("billing", "payment")
        return format_html('<a href="{}?tenant__id__exact={}">{}</a>', url, obj.pk, label) if url else label

    @staticmethod
    def _changelist_url(app_label: str, model_name: str) -> str:
        try:
            return reverse(f"admin:{app_label}_{model_name}_changelist")
        except NoReverseMatch:
            return ""


admin.site.unregister(Tenant)
admin.site.register(Tenant, TenantAdmin)
