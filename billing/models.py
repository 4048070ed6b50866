"""Plans, subscriptions, payments, credits, message quota and gateway events."""
import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy as _
from django_scopes import ScopedManager, scope

from whago.models import Tenant

from .failures import FailureCode, failure_message


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
    max_active_campaigns = models.PositiveIntegerField(
        _("campaigns running at once"), default=1, help_text=_("0 means campaigns are not available.")
    )
    max_campaign_recipients = models.PositiveIntegerField(_("recipients per campaign"), default=500)
    api_access = models.BooleanField(_("API access"), default=False)
    container_memory_mb = models.PositiveIntegerField(_("container memory (MB)"), default=512)
    container_cpus = models.DecimalField(_("container CPUs"), max_digits=4, decimal_places=2, default=Decimal("0.5"))
    is_public = models.BooleanField(_("shown on the pricing page"), default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    # Optional ids of the same plan at the providers (a PayPal billing plan, for instance).
    paypal_plan_id = models.CharField(_("PayPal plan id"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        ordering = ["sort_order", "price_brl"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_free(self) -> bool:
        return self.price_brl == 0

    @property
    def price_cents(self) -> int:
        return int(self.price_brl * 100)


class Gateway(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    MERCADOPAGO = "mercadopago", "Mercado Pago"
    PAYPAL = "paypal", "PayPal"
    SANDBOX = "sandbox", _("Sandbox (test payments)")


class Subscription(models.Model):
    """A tenant's current plan, its billing period and where it is paid."""

    class Status(models.TextChoices):
        TRIALING = "trialing", _("Trial")
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        CANCELED = "canceled", _("Canceled")

    # Statuses in which the plan's limits apply; otherwise the FREE plan's do.
    IN_FORCE = (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE)

    tenant = models.OneToOneField("whago.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    current_period_start = models.DateTimeField(_("period start"), null=True, blank=True)
    current_period_end = models.DateTimeField(_("period end"), null=True, blank=True)
    gateway = models.CharField(_("gateway"), max_length=16, choices=Gateway.choices, blank=True)
    external_id = models.CharField(_("subscription id at the gateway"), max_length=128, blank=True)
    external_customer_id = models.CharField(_("customer id at the gateway"), max_length=128, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")

    def __str__(self) -> str:
        return f"{self.tenant} — {self.plan}"

    @property
    def in_force(self) -> bool:
        return self.status in self.IN_FORCE


class Payment(models.Model):
    """Money we asked a gateway for: a plan period or a pack of message credits."""

    class Kind(models.TextChoices):
        PLAN = "plan", _("Plan")
        CREDITS = "credits", _("Message credits")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")
        REFUNDED = "refunded", _("Refunded")

    class Method(models.TextChoices):
        CARD = "card", _("Card")
        PIX = "pix", "PIX"
        PAYPAL = "paypal", "PayPal"
        CHECKOUT = "checkout", _("Gateway checkout")

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="payments")
    reference = models.UUIDField(_("reference"), default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="payments")
    credits = models.PositiveIntegerField(_("credits"), default=0)
    amount = models.DecimalField(_("amount"), max_digits=10, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="BRL")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    gateway = models.CharField(_("gateway"), max_length=16, choices=Gateway.choices)
    method = models.CharField(_("method"), max_length=16, choices=Method.choices, default=Method.CHECKOUT)
    # The checkout / preference / order id we created at the gateway.
    external_id = models.CharField(_("checkout id at the gateway"), max_length=128, blank=True)
    # The payment / capture / invoice id the gateway reported when money moved.
    external_payment_id = models.CharField(_("payment id at the gateway"), max_length=128, blank=True)
    checkout_url = models.URLField(_("checkout address"), max_length=1000, blank=True)
    pix_qr_code = models.TextField(_("PIX copy-and-paste code"), blank=True)
    pix_qr_code_base64 = models.TextField(_("PIX QR code image"), blank=True)
    # Why it failed: failure_code is what the buyer reads (failure_message, translated); failure_reason is
    # the technical detail (provider's answer, exception text) for operators only: the console, never the portal.
    failure_code = models.CharField(_("failure"), max_length=16, choices=FailureCode.choices, blank=True)
    failure_reason = models.TextField(_("technical detail (operators only)"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    created_by = models.ForeignKey(
        "whago.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "external_id"], condition=~models.Q(external_id=""), name="payment_unique_checkout"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} R$ {self.amount} ({self.get_status_display()})"

    @property
    def amount_cents(self) -> int:
        return int(self.amount * 100)

    @property
    def receipt_number(self) -> str:
        return f"WHG-{self.created_at:%Y%m}-{self.pk:06d}"

    @property
    def failure_message(self) -> str:
        """The plain, translated reason shown to the buyer; "" when there is nothing to explain."""
        code = self.failure_code or {self.Status.FAILED: FailureCode.DECLINED,
                                     self.Status.CANCELED: FailureCode.CANCELED}.get(self.status, "")
        return failure_message(code, self.get_gateway_display()) if code else ""

    @property
    def description(self) -> str:
        if self.kind == self.Kind.PLAN and self.plan_id:
            return _("Plan %(plan)s, one month") % {"plan": self.plan.name}
        # "1.000 créditos" in pt-BR, "1,000 credits" in English: in the active language, also when sent to a gateway.
        return _("%(n)s message credits") % {"n": number_format(self.credits, force_grouping=True)}


class CreditLedger(models.Model):
    """Append-only movements of message credits; a tenant's balance is their sum."""

    class Reason(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        SPEND = "spend", _("Messages over the plan quota")
        RELEASE = "release", _("Unsent messages given back")
        ADJUSTMENT = "adjustment", _("Adjustment by an operator")

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="credit_entries")
    amount = models.IntegerField(_("credits"))
    reason = models.CharField(_("reason"), max_length=16, choices=Reason.choices)
    payment = models.OneToOneField(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entry"
    )
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("credit ledger entry")
        verbose_name_plural = _("credit ledger")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.amount:+d} ({self.get_reason_display()})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError(_("Ledger entries cannot be changed; add a correcting entry instead."))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError(_("Ledger entries cannot be deleted; add a correcting entry instead."))


class UsageCounter(models.Model):
    """Messages a tenant sent within its plan quota in one day or one month."""

    class Period(models.TextChoices):
        DAY = "day", _("Day")
        MONTH = "month", _("Month")

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="usage_counters")
    period = models.CharField(max_length=8, choices=Period.choices)
    starts_on = models.DateField()
    used = models.PositiveIntegerField(default=0)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("usage counter")
        verbose_name_plural = _("usage counters")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period", "starts_on"], name="usage_counter_unique_period")
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.period} {self.starts_on}: {self.used}"


def lock_tenant_billing(tenant_id: int) -> None:
    """The per-tenant lock every quota and ledger writer takes first: the subscription row."""
    if Subscription.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id).first() is None:
        Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).first()


class Reservation(models.Model):
    """Messages counted before they are sent; what is not sent can be given back."""

    tenant = models.ForeignKey("whago.Tenant", on_delete=models.CASCADE, related_name="message_reservations")
    day = models.DateField()
    quantity = models.PositiveIntegerField()
    from_plan = models.PositiveIntegerField(default=0)
    from_credits = models.PositiveIntegerField(default=0)
    released = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        verbose_name = _("message reservation")
        verbose_name_plural = _("message reservations")
        indexes = [models.Index(fields=["tenant", "day"])]

    def __str__(self) -> str:
        return f"{self.quantity} messages on {self.day}"

    @property
    def outstanding(self) -> int:
        return self.quantity - self.released

    def release(self, n: int | None = None) -> int:
        """Give back n (default: all outstanding) unsent messages; returns how many."""
        with transaction.atomic(), scope(tenant=self.tenant_id):
            lock_tenant_billing(self.tenant_id)
            locked = Reservation.objects.select_for_update().get(pk=self.pk)
            given = locked.release_locked(n)
        self.released = locked.released
        return given

    def release_locked(self, n: int | None) -> int:
        """release() on a row already locked, its tenant's billing too (lock_tenant_billing)."""
        give = self.outstanding if n is None else max(0, min(n, self.outstanding))
        if not give:
            return 0
        # Credits went in last and come back first: they cost money.
        credits_back = min(give, self.from_credits - min(self.released, self.from_credits))
        plan_back = give - credits_back
        if credits_back:
            CreditLedger.objects.create(
                tenant_id=self.tenant_id, amount=credits_back, reason=CreditLedger.Reason.RELEASE,
                note=f"reservation {self.pk}",
            )
        if plan_back:
            for period, starts_on in (
                (UsageCounter.Period.DAY, self.day),
                (UsageCounter.Period.MONTH, self.day.replace(day=1)),
            ):
                counter = UsageCounter.objects.filter(
                    tenant_id=self.tenant_id, period=period, starts_on=starts_on
                ).first()
                if counter is not None:
                    counter.used = max(0, counter.used - plan_back)
                    counter.save(update_fields=["used"])
        self.released += give
        self.save(update_fields=["released"])
        return give


class GatewayEvent(models.Model):
    """A webhook a gateway delivered, verified; one row per (gateway, event id), applied once."""

    class Result(models.TextChoices):
        RECEIVED = "received", _("Received")
        APPLIED = "applied", _("Applied")
        IGNORED = "ignored", _("Ignored")
        MISMATCH = "mismatch", _("Amount or currency mismatch: not applied")
        UNKNOWN_PAYMENT = "unknown_payment", _("No matching payment")
        ERROR = "error", _("Error")

    gateway = models.CharField(_("gateway"), max_length=16, choices=Gateway.choices)
    event_id = models.CharField(_("event id"), max_length=200)
    event_type = models.CharField(_("event type"), max_length=100, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    result = models.CharField(_("result"), max_length=20, choices=Result.choices, default=Result.RECEIVED)
    detail = models.TextField(_("detail"), blank=True)
    deliveries = models.PositiveIntegerField(_("deliveries"), default=1)
    payment = models.ForeignKey(Payment, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")

    class Meta:
        verbose_name = _("gateway event")
        verbose_name_plural = _("gateway events")
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["gateway", "event_id"], name="gateway_event_unique_id")]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_type} {self.event_id}"
