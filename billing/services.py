"""Billing operations: checkouts, applying verified payments once, plan changes, credits."""
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scope, scopes_disabled

from whago.models import SuspensionKind, Tenant, User

from . import gateways
from .failures import FailureCode
from .gateways import base
from .models import CreditLedger, GatewayEvent, Payment, Plan, Subscription
from .signals import plan_changed, usage_requested

log = logging.getLogger(__name__)


class BillingError(Exception):
    """An operation the user asked for cannot be done; the message says why."""


class CheckoutFailed(BillingError):
    """The gateway could not start the checkout: the Payment is marked failed; its page explains and offers
    to try again."""

    def __init__(self, payment: "Payment"):
        self.payment = payment
        super().__init__(payment.failure_message)


def _gateway_failure(provider: base.PaymentGateway, exc: base.GatewayError, what: str) -> BillingError:
    """Log the technical detail for operators; give the user the plain message."""
    log.warning("%s %s failed (%s): %s", provider.code, what, exc.code, exc.detail)
    return BillingError(str(exc))


@dataclass(frozen=True)
class CreditPack:
    credits: int
    price: Decimal


def credit_packs() -> list[CreditPack]:
    """The message credit packs on sale (settings.BILLING_CREDIT_PACKS)."""
    packs = []
    for item in settings.BILLING_CREDIT_PACKS:
        credits, _sep, price = item.partition(":")
        packs.append(CreditPack(credits=int(credits), price=Decimal(price).quantize(Decimal("0.01"))))
    return sorted(packs, key=lambda p: p.credits)


@transaction.atomic
def start_free_plan(tenant: Tenant) -> Subscription:
    """Put a new tenant on the FREE plan."""
    with scope(tenant=tenant.pk):
        return Subscription.objects.create(
            tenant=tenant, plan=Plan.objects.get(code=Plan.FREE), current_period_start=timezone.now()
        )


def subscription_of(tenant: Tenant) -> Subscription:
    """The tenant's subscription, created on the FREE plan if it is missing."""
    with scope(tenant=tenant.pk):
        subscription = Subscription.objects.select_related("plan").first()
    return subscription or start_free_plan(tenant)


def current_usage(tenant: Tenant) -> dict:
    """What other apps report the tenant uses now (chips, campaigns...), via usage_requested."""
    usage: dict = {}
    for _receiver, answer in usage_requested.send_robust(sender=None, tenant=tenant):
        if isinstance(answer, dict):
            usage.update(answer)
    return usage


def downgrade_warning(tenant: Tenant, plan: Plan) -> str:
    """The message shown before moving to a plan with fewer chips than the tenant uses."""
    chips = current_usage(tenant).get("chips")
    if chips is not None and chips > plan.max_chips:
        return _(
            "You have %(chips)s chips and the %(plan)s plan allows %(limit)s: the %(extra)s chip(s) above the "
            "limit will be stopped (not deleted). You can choose which ones on the Chips page."
        ) % {"chips": chips, "plan": plan.name, "limit": plan.max_chips, "extra": chips - plan.max_chips}
    return _(
        "The %(plan)s plan allows %(limit)s chip(s): chips above the limit will be stopped (not deleted)."
    ) % {"plan": plan.name, "limit": plan.max_chips}


def _urls(payment: Payment) -> dict:
    site = settings.SITE_URL
    return {
        "success_url": site + reverse("billing_return", args=[payment.reference]),
        "cancel_url": site + reverse("billing_return", args=[payment.reference]) + "?canceled=1",
        "notification_url": site + reverse("billing_webhook", args=[payment.gateway]),
    }


def start_checkout(
    tenant: Tenant, user: User | None, *, gateway: str, plan: Plan | None = None, credits: int | None = None,
    method: str = "",
) -> Payment:
    """Record a pending Payment and create its checkout at the gateway (or a PIX charge)."""
    try:
        provider = gateways.get_gateway(gateway)
    except KeyError:
        raise BillingError(_("Unknown payment method."))
    if not provider.is_configured():
        raise BillingError(_("%(gateway)s is not available.") % {"gateway": provider.label})
    if method == "pix" and not provider.supports_pix:
        raise BillingError(_("%(gateway)s does not take PIX.") % {"gateway": provider.label})
    if (plan is None) == (credits is None):
        raise BillingError(_("Choose a plan or a credit pack."))
    if plan is not None:
        if plan.is_free:
            raise BillingError(_("The free plan needs no payment."))
        current = subscription_of(tenant)
        if current.plan_id == plan.pk and current.in_force and current.gateway == "stripe" and current.external_id:
            raise BillingError(_("You are already on the %(plan)s plan.") % {"plan": plan.name})
        fields = {"kind": Payment.Kind.PLAN, "plan": plan, "amount": plan.price_brl}
    else:
        pack = next((p for p in credit_packs() if p.credits == credits), None)
        if pack is None:
            raise BillingError(_("Unknown credit pack."))
        fields = {"kind": Payment.Kind.CREDITS, "credits": pack.credits, "amount": pack.price}
    payment_method = {"pix": Payment.Method.PIX, "paypal": Payment.Method.PAYPAL}.get(
        method or gateway, Payment.Method.CHECKOUT
    )
    with scope(tenant=tenant.pk):
        # Committed before the provider is called: a fast webhook must find it.
        payment = Payment.objects.create(
            tenant=tenant, gateway=gateway, method=payment_method, created_by=user, currency="BRL", **fields
        )
        try:
            result = provider.create_checkout(payment, method=method, **_urls(payment))
        except base.GatewayError as exc:
            log.warning("%s checkout %s failed (%s): %s", gateway, payment.reference, exc.code, exc.detail)
            _fail_checkout(payment, exc.code, exc.detail)
            raise CheckoutFailed(payment)
        except Exception as exc:
            # Whatever else went wrong (an answer of an unexpected shape...): never a pending Payment left behind.
            log.exception("%s checkout %s failed", gateway, payment.reference)
            _fail_checkout(payment, FailureCode.REFUSED, f"{type(exc).__name__}: {exc}")
            raise CheckoutFailed(payment)
        payment.external_id = result.external_id
        payment.external_payment_id = result.external_payment_id
        payment.checkout_url = result.redirect_url
        payment.pix_qr_code = result.pix_qr_code
        payment.pix_qr_code_base64 = result.pix_qr_code_base64
        payment.save(update_fields=["external_id", "external_payment_id", "checkout_url", "pix_qr_code",
                                    "pix_qr_code_base64"])
    return payment


def _fail_checkout(payment: Payment, code: str, detail: str) -> None:
    payment.status = Payment.Status.FAILED
    payment.failure_code = code
    payment.failure_reason = detail[:4000]
    payment.save(update_fields=["status", "failure_code", "failure_reason"])


# --- applying what gateways report -------------------------------------------------


def _same_money(payment: Payment, confirmation: base.PaymentConfirmation) -> bool:
    try:
        amount = Decimal(confirmation.amount).quantize(Decimal("0.01"))
    except (InvalidOperation, TypeError):
        return False
    return amount == payment.amount and (confirmation.currency or "").upper() == payment.currency.upper()


def _activate_plan(payment: Payment, confirmation: base.PaymentConfirmation) -> None:
    """Move the tenant to the paid plan for one period (or the period the gateway reported)."""
    subscription = Subscription.objects.select_for_update().select_related("plan").get(tenant_id=payment.tenant_id)
    old_plan = subscription.plan
    previous = (subscription.gateway, subscription.external_id)
    now = timezone.now()
    subscription.plan = payment.plan
    subscription.status = Subscription.Status.ACTIVE
    subscription.current_period_start = now
    subscription.current_period_end = confirmation.period_end or now + relativedelta(months=1)
    subscription.gateway = payment.gateway
    subscription.external_id = confirmation.subscription_id
    subscription.external_customer_id = confirmation.customer_id or subscription.external_customer_id
    subscription.save()
    if previous[1] and previous != (subscription.gateway, subscription.external_id):
        # The old recurring subscription must not charge again.
        transaction.on_commit(lambda: _cancel_at_gateway(*previous))
    _announce_plan_change(subscription.tenant, old_plan, subscription.plan)


def _announce_plan_change(tenant: Tenant, old_plan: Plan, new_plan: Plan) -> None:
    if old_plan.pk != new_plan.pk:
        transaction.on_commit(
            lambda: plan_changed.send(sender=Subscription, tenant=tenant, old_plan=old_plan, new_plan=new_plan)
        )


def _cancel_at_gateway(gateway: str, subscription_id: str) -> None:
    try:
        gateways.get_gateway(gateway).cancel_subscription(subscription_id)
    except base.GatewayError as exc:
        log.error("could not cancel %s subscription %s (%s): %s", gateway, subscription_id, exc.code, exc.detail)
    except KeyError:
        log.exception("could not cancel %s subscription %s", gateway, subscription_id)


def apply_confirmation(payment: Payment, confirmation: base.PaymentConfirmation) -> tuple[str, str]:
    """Apply a provider-confirmed state to a Payment locked by the caller; idempotent."""
    if confirmation.status == Payment.Status.PENDING:
        return GatewayEvent.Result.IGNORED, "payment still pending at the gateway"
    if payment.status != Payment.Status.PENDING:
        if confirmation.status == Payment.Status.REFUNDED and payment.status == Payment.Status.PAID:
            payment.status = Payment.Status.REFUNDED
            payment.save(update_fields=["status"])
            return GatewayEvent.Result.APPLIED, "marked refunded"
        return GatewayEvent.Result.IGNORED, f"payment already {payment.status}"
    if confirmation.status != Payment.Status.PAID:
        payment.status = confirmation.status
        payment.failure_code = {Payment.Status.FAILED: FailureCode.DECLINED,
                                Payment.Status.CANCELED: FailureCode.CANCELED}.get(confirmation.status, "")
        payment.failure_reason = f"gateway reported {confirmation.status}"
        payment.save(update_fields=["status", "failure_code", "failure_reason"])
        return GatewayEvent.Result.APPLIED, f"payment {confirmation.status}"
    if not _same_money(payment, confirmation):
        detail = (
            f"expected {payment.amount} {payment.currency}, gateway reported "
            f"{confirmation.amount} {confirmation.currency}"
        )
        payment.failure_reason = detail
        payment.save(update_fields=["failure_reason"])
        log.warning("payment %s not applied: %s", payment.reference, detail)
        return GatewayEvent.Result.MISMATCH, detail
    payment.status = Payment.Status.PAID
    payment.paid_at = timezone.now()
    payment.failure_code = payment.failure_reason = ""
    if confirmation.external_payment_id:
        payment.external_payment_id = confirmation.external_payment_id
    payment.save(update_fields=["status", "paid_at", "failure_code", "failure_reason", "external_payment_id"])
    if payment.kind == Payment.Kind.CREDITS:
        CreditLedger.objects.create(
            tenant_id=payment.tenant_id, amount=payment.credits, reason=CreditLedger.Reason.PURCHASE, payment=payment,
            note=str(payment.reference),
        )
    else:
        _activate_plan(payment, confirmation)
    detail = f"paid {payment.amount} {payment.currency}"
    if _lift_nonpayment_suspension(payment):
        detail += "; company reactivated (it was suspended for non-payment)"
    return GatewayEvent.Result.APPLIED, detail


def _lift_nonpayment_suspension(payment: Payment) -> bool:
    """A confirmed payment reactivates its company if it was suspended for non-payment (not for another
    reason, and not by a test payment). Runs once per payment: only a pending payment gets here."""
    from whago import services as accounts  # whago.services imports this module

    if gateways.get_gateway(payment.gateway).is_test:
        return False
    tenant = Tenant.objects.get(pk=payment.tenant_id)
    return accounts.reactivate_tenant(
        tenant, only_kind=SuspensionKind.NONPAYMENT,
        why=f"payment {payment.reference} confirmed by {payment.get_gateway_display()}",
    )


def _find_payment(gateway: str, event: base.WebhookEvent) -> Payment | None:
    match = Q()
    if event.external_id:
        match |= Q(external_id=event.external_id) | Q(external_payment_id=event.external_id)
    if event.reference:
        with contextlib.suppress(ValueError):
            match |= Q(reference=uuid.UUID(event.reference))
    if not match:
        return None
    return Payment.objects.select_for_update(of=("self",)).filter(match, gateway=gateway).select_related("plan").first()


def _apply_event(gateway: str, event: base.WebhookEvent) -> tuple[str, str, Payment | None]:
    if event.action == base.PAYMENT:
        payment = _find_payment(gateway, event)
        if payment is None or event.confirmation is None:
            return GatewayEvent.Result.UNKNOWN_PAYMENT, "no payment of ours matches this event", None
        charge = event.confirmation.external_payment_id
        if event.subscription_id and payment.status == Payment.Status.PAID and charge != payment.external_payment_id:
            # A further charge on a subscription checkout already applied: a renewal.
            event.action = base.RENEWAL
            return _apply_event(gateway, event)
        result, detail = apply_confirmation(payment, event.confirmation)
        return result, detail, payment
    if event.action in (base.RENEWAL, base.SUBSCRIPTION_PAST_DUE, base.SUBSCRIPTION_CANCELED):
        subscription = (
            Subscription.objects.select_for_update().select_related("plan", "tenant")
            .filter(gateway=gateway, external_id=event.subscription_id).exclude(external_id="").first()
        )
        if subscription is None:
            return GatewayEvent.Result.UNKNOWN_PAYMENT, "no subscription of ours matches this event", None
        if event.action == base.SUBSCRIPTION_PAST_DUE:
            subscription.status = Subscription.Status.PAST_DUE
            subscription.save(update_fields=["status", "updated_at"])
            return GatewayEvent.Result.APPLIED, "subscription past due", None
        if event.action == base.SUBSCRIPTION_CANCELED:
            _move_to_free(subscription)
            return GatewayEvent.Result.APPLIED, "subscription canceled: back to FREE", None
        return _apply_renewal(gateway, subscription, event.confirmation)
    return GatewayEvent.Result.IGNORED, f"event type {event.event_type or '?'} is not used", None


def _apply_renewal(gateway: str, subscription: Subscription, confirmation) -> tuple[str, str, Payment]:
    """A recurring charge of a subscription: a Payment of our own, checked, then the period extended."""
    payment = Payment.objects.create(
        tenant_id=subscription.tenant_id, kind=Payment.Kind.PLAN, plan=subscription.plan, gateway=gateway,
        amount=subscription.plan.price_brl, currency="BRL", method=Payment.Method.CARD,
    )
    result, detail = apply_confirmation(payment, confirmation)
    return result, detail, payment


def process_event(gateway: str, event: base.WebhookEvent) -> GatewayEvent:
    """Record a verified webhook and apply it exactly once, however often and concurrently it arrives."""
    defaults = {"event_type": event.event_type[:100], "payload": event.payload}
    try:
        with transaction.atomic(), scopes_disabled():
            # A concurrent twin blocks on the unique (gateway, event_id) until we commit.
            record, created = GatewayEvent.objects.get_or_create(
                gateway=gateway, event_id=event.event_id, defaults=defaults
            )
            record = GatewayEvent.objects.select_for_update().get(pk=record.pk)
            if not created:
                record.deliveries = F("deliveries") + 1
                record.save(update_fields=["deliveries"])
                record.refresh_from_db()
            if record.processed_at is not None:
                return record
            result, detail, payment = _apply_event(gateway, event)
            record.result, record.detail, record.payment = result, detail, payment
            record.processed_at = timezone.now()
            record.save(update_fields=["result", "detail", "payment", "processed_at"])
            return record
    except Exception as exc:
        # Everything above rolled back; keep the event visible, unprocessed, so a redelivery retries it.
        with transaction.atomic(), scopes_disabled():
            record, _created = GatewayEvent.objects.get_or_create(
                gateway=gateway, event_id=event.event_id, defaults=defaults
            )
            if record.processed_at is None:
                record.result, record.detail = GatewayEvent.Result.ERROR, repr(exc)[:2000]
                record.save(update_fields=["result", "detail"])
        raise


def confirm_with_gateway(payment: Payment, params: dict) -> str:
    """Ask the gateway about a payment (buyer's return, "check status"); apply once; returns the result."""
    provider = gateways.get_gateway(payment.gateway)
    try:
        confirmation = provider.confirm_return(payment, params)
    except base.GatewayError as exc:
        # Not a verdict on the payment (the buyer may have paid): it stays pending, to be checked again.
        raise _gateway_failure(provider, exc, f"confirmation of {payment.reference}")
    if confirmation is None:
        return GatewayEvent.Result.IGNORED
    with transaction.atomic(), scope(tenant=payment.tenant_id):
        locked = Payment.objects.select_for_update(of=("self",)).select_related("plan").get(pk=payment.pk)
        result, _detail = apply_confirmation(locked, confirmation)
    return result


def complete_sandbox_payment(payment: Payment, *, approve: bool) -> GatewayEvent:
    """The sandbox's local confirmation page: an event shaped like a gateway's, same apply path."""
    if payment.gateway != "sandbox" or not gateways.get_gateway("sandbox").is_configured():
        raise BillingError(_("This is not a sandbox payment."))
    confirmation = base.PaymentConfirmation(
        status=Payment.Status.PAID if approve else Payment.Status.FAILED, amount=payment.amount,
        currency=payment.currency, external_payment_id=f"sbxpay_{payment.external_id}",
        subscription_id=f"sbxsub_{payment.reference.hex[:16]}" if payment.kind == Payment.Kind.PLAN else "",
    )
    event = base.WebhookEvent(
        event_id=f"sandbox:{payment.reference}",
        event_type="sandbox.payment." + ("approved" if approve else "declined"),
        payload={"reference": str(payment.reference), "approved": approve, "amount": str(payment.amount)},
        action=base.PAYMENT, external_id=payment.external_id, confirmation=confirmation,
    )
    return process_event("sandbox", event)


# --- plan changes without payment ----------------------------------------------------


def _move_to_free(subscription: Subscription) -> None:
    old_plan = subscription.plan
    subscription.plan = Plan.objects.get(code=Plan.FREE)
    subscription.status = Subscription.Status.ACTIVE
    subscription.gateway = ""
    subscription.external_id = ""
    subscription.current_period_start = timezone.now()
    subscription.current_period_end = None
    subscription.save()
    _announce_plan_change(subscription.tenant, old_plan, subscription.plan)


def downgrade_to_free(tenant: Tenant) -> Subscription:
    """Cancel the paid plan (at the gateway too) and move to FREE now."""
    subscription = subscription_of(tenant)
    if subscription.plan.code == Plan.FREE:
        raise BillingError(_("You are already on the free plan."))
    if subscription.gateway and subscription.external_id:
        provider = gateways.get_gateway(subscription.gateway)
        try:
            provider.cancel_subscription(subscription.external_id)
        except base.GatewayError as exc:
            raise _gateway_failure(provider, exc, f"cancellation of {subscription.external_id}")
    with transaction.atomic(), scope(tenant=tenant.pk):
        locked = Subscription.objects.select_for_update().select_related("plan", "tenant").get(pk=subscription.pk)
        _move_to_free(locked)
    return locked


def expire_subscriptions(now=None) -> int:
    """Prepaid periods that ended: past due, then back to FREE after BILLING_GRACE_DAYS; returns changes."""
    now = now or timezone.now()
    grace = timedelta(days=settings.BILLING_GRACE_DAYS)
    changed = 0
    with scopes_disabled():
        due = list(
            Subscription.objects.filter(current_period_end__lt=now).exclude(plan__code=Plan.FREE)
            .values_list("pk", flat=True)
        )
        for pk in due:
            with transaction.atomic():
                subscription = Subscription.objects.select_for_update().select_related("plan", "tenant").get(pk=pk)
                if subscription.current_period_end is None or subscription.current_period_end >= now:
                    continue
                if subscription.current_period_end + grace < now:
                    _move_to_free(subscription)
                    changed += 1
                elif subscription.status != Subscription.Status.PAST_DUE:
                    subscription.status = Subscription.Status.PAST_DUE
                    subscription.save(update_fields=["status", "updated_at"])
                    changed += 1
    return changed
