"""Stripe: Checkout Sessions (subscription mode for plans, payment mode for credits)."""
import time
from datetime import UTC, datetime
from decimal import Decimal

import requests
import stripe
from django.conf import settings
from django.http import HttpRequest

from . import base


def _amount(cents) -> Decimal:
    return (Decimal(int(cents or 0)) / 100).quantize(Decimal("0.01"))


def _subscription_of_invoice(invoice: dict) -> str:
    """Invoices name their subscription at the top (old API versions) or under parent (new ones)."""
    sub = invoice.get("subscription")
    if isinstance(sub, str) and sub:
        return sub
    if sub:
        return str(base.member(invoice, "subscription").get("id") or "")
    details = base.member(base.member(invoice, "parent"), "subscription_details")
    return str(details.get("subscription") or "")


def _signed_timestamp(header: str) -> int:
    """The t= of a Stripe-Signature header (already verified)."""
    for part in header.split(","):
        key, _sep, value = part.partition("=")
        if key.strip() == "t":
            return int(value)
    raise ValueError("no timestamp")


class StripeGateway(base.PaymentGateway):
    code = "stripe"
    label = "Stripe"
    provider_errors = (stripe.StripeError, requests.RequestException)

    def is_unavailable(self, exc: Exception) -> bool:
        return isinstance(exc, (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError,
                                requests.RequestException))

    @classmethod
    def is_configured(cls) -> bool:
        return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)

    def _client(self) -> stripe.StripeClient:
        # requests, explicitly: the HTTP layer the tests fake (and stripe's default sync client).
        return stripe.StripeClient(
            settings.STRIPE_SECRET_KEY, http_client=stripe.RequestsClient(timeout=30), max_network_retries=0
        )

    def create_checkout(self, payment, *, success_url, cancel_url, notification_url, method=""):
        price_data = {
            "currency": payment.currency.lower(),
            "unit_amount": payment.amount_cents,
            "product_data": {"name": str(payment.description)},
        }
        params = {
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(payment.reference),
            "metadata": {"payment_reference": str(payment.reference), "tenant_id": str(payment.tenant_id)},
            "line_items": [{"price_data": price_data, "quantity": 1}],
        }
        if payment.kind == "plan":
            params["mode"] = "subscription"
            price_data["recurring"] = {"interval": "month"}
            params["subscription_data"] = {"metadata": params["metadata"]}
        else:
            params["mode"] = "payment"
            params["payment_intent_data"] = {"metadata": params["metadata"]}
        session = self._client().v1.checkout.sessions.create(params=params)
        return base.CheckoutResult(external_id=session.id, redirect_url=session.url or "")

    def parse_webhook(self, request: HttpRequest) -> base.WebhookEvent:
        header = request.headers.get("Stripe-Signature", "")
        tolerance = settings.BILLING_WEBHOOK_TOLERANCE
        try:
            # Signature over "t.body", and t not older than the tolerance...
            stripe.WebhookSignature.verify_header(request.body, header, settings.STRIPE_WEBHOOK_SECRET, tolerance)
            signed_at = _signed_timestamp(header)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise base.WebhookRejected(f"stripe signature: {exc}")
        if signed_at > time.time() + tolerance:
            # ...nor further ahead than the tolerance (the SDK checks only the past).
            raise base.WebhookRejected("stripe signature: timestamp in the future")
        # The whole body is signed: the event id in it is signed data.
        payload = base.json_object(request.body, "stripe")
        event_type = str(payload.get("type") or "")
        obj = base.member(base.member(payload, "data"), "object")
        event_id = payload.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise base.WebhookRejected("stripe event without id")
        event = base.WebhookEvent(event_id=event_id, event_type=event_type, payload=payload)
        if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                          "checkout.session.async_payment_failed", "checkout.session.expired"):
            event.action = base.PAYMENT
            event.external_id = obj.get("id", "")
            event.confirmation = self._session_confirmation(obj, event_type)
        elif event_type == "invoice.paid" and obj.get("billing_reason") == "subscription_cycle":
            event.action = base.RENEWAL
            event.subscription_id = _subscription_of_invoice(obj)
            lines = base.member(obj, "lines").get("data") or [{}]
            first = lines[0] if isinstance(lines, list) and isinstance(lines[0], dict) else {}
            period_end = base.member(first, "period").get("end") or obj.get("period_end")
            event.confirmation = base.PaymentConfirmation(
                status="paid", amount=_amount(obj.get("amount_paid")), currency=(obj.get("currency") or "").upper(),
                external_payment_id=obj.get("id", ""), subscription_id=event.subscription_id,
                period_end=datetime.fromtimestamp(period_end, tz=UTC) if period_end else None,
            )
        elif event_type == "invoice.payment_failed":
            event.action = base.SUBSCRIPTION_PAST_DUE
            event.subscription_id = _subscription_of_invoice(obj)
        elif event_type == "customer.subscription.deleted":
            event.action = base.SUBSCRIPTION_CANCELED
            event.subscription_id = obj.get("id", "")
        return event

    @staticmethod
    def _session_confirmation(obj: dict, event_type: str = "") -> base.PaymentConfirmation:
        if event_type == "checkout.session.async_payment_failed":
            status = "failed"
        elif event_type == "checkout.session.expired" or obj.get("status") == "expired":
            status = "canceled"
        elif obj.get("payment_status") in ("paid", "no_payment_required"):
            status = "paid"
        else:
            status = "pending"
        return base.PaymentConfirmation(
            status=status, amount=_amount(obj.get("amount_total")), currency=(obj.get("currency") or "").upper(),
            external_payment_id=obj.get("payment_intent") or obj.get("invoice") or "",
            subscription_id=obj.get("subscription") or "", customer_id=obj.get("customer") or "",
        )

    def fetch_payment(self, external_payment_id: str) -> base.PaymentConfirmation:
        """external_payment_id here is the Checkout Session id we created."""
        session = self._client().v1.checkout.sessions.retrieve(external_payment_id)
        return self._session_confirmation(session.to_dict())

    def confirm_return(self, payment, params):
        return self.fetch_payment(payment.external_id) if payment.external_id else None

    def cancel_subscription(self, subscription_id: str) -> None:
        self._client().v1.subscriptions.cancel(subscription_id)
