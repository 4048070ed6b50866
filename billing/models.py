"""Plans and subscriptions. The billing issue adds payments, credits and gateways."""
from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager


class Plan(models.Model):
    """What a tenant may do, for a monthly price in BRL; editable by operators."""

    FREE = "FREE"

    code = models.CharField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=80)
    description = models.CharField(_("description"), max_length=200, blank=True)
    price_brl = models.DecimalField(_("monthly price (R$)"), max_digits=10, decimal_places=2, default=Decimal("0"))
    max_chips = models.PositiveIntegerField(_("chips"))
    messages_per_day = models.PositiveIntegerField(_("messages per day"))
    messages_per_month = models.PositiveIntegerField(_("messages per month"))
    is_public = models.BooleanField(_("shown on the pricing page"), default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        ordering = ["sort_order", "price_brl"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    """A tenant's current plan."""

    class Status(models.TextChoices):
        TRIALING = "trialing", _("Trial")
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        CANCELED = "canceled", _("Canceled")

    tenant = models.OneToOneField("whago.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")

    def __str__(self) -> str:
        return f"{self.tenant} — {self.plan}"
