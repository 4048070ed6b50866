"""Mercado Pago: Checkout Pro preferences (card, boleto...) and PIX payments with their QR code."""
import json
from decimal import Decimal

import mercadopago
from django.conf import settings
from django.http import HttpRequest
from django.utils.translation import gettext as _
from mercadopago.config import RequestOptions
from mercadopago.webhook import InvalidWebhookSignatureError, WebhookSignatureValidator

from . import base

# Mercado Pago payment statuses → ours.
STATUSES = {
    "approved": "paid",
    "authorized": "pending",
    "pending": "pending",
    "in_process": "pending",
    "in_mediation": "pending",
    "rejected": "failed",
    "cancelled": "canceled",
    "refunded": "refunded",
    "charged_back": "refunded",
}


class MercadoPagoGateway(base.PaymentGateway):
    code = "mercadopago"
    label = "Mercado Pago"
    supports_pix = True

    @classmethod
    def is_configured(cls) -> bool:
        return bool(settings.MERCADOPAGO_ACCESS_TOKEN and settings.MERCADOPAGO_WEBHOOK_SECRET)

    def _sdk(self) -> mercadopago.SDK:
        return mercadopago.SDK(
            settings.MERCADOPAGO_ACCESS_TOKEN, request_options=RequestOptions(connection_timeout=30.0, max_retries=0)
        )

    @staticmethod
    def _check(result: dict, what: str) -> dict:
        if not 200 <= int(result.get("status", 0)) < 300:
            body = result.get("response") or {}
            message = body.get("message", "") if isinstance(body, dict) else ""
            raise base.GatewayError(
                _("Mercado Pago refused %(what)s: %(error)s") % {"what": what, "error": message or result.get("status")}
            )
        return result["response"]

    def create_checkout(self, payment, *, success_url, cancel_url, notification_url, method=""):
        # No notification_url (deprecated, unsigned): the signed Webhook is set in "Your integrations".
        amount = float(payment.amount)
        reference = str(payment.reference)
        if method == "pix":
            body = {
                "transaction_amount": amount,
                "description": str(payment.description),
                "payment_method_id": "pix",
                "external_reference": reference,
                "payer": {"email": payment.created_by.email if payment.created_by else "cliente@whago.local"},
            }
            options = RequestOptions(
                connection_timeout=30.0, max_retries=0, custom_headers={"x-idempotency-key": reference}
            )
            data = self._check(self._sdk().payment().create(body, options), _("the PIX payment"))
            pix = (data.get("point_of_interaction") or {}).get("transaction_data") or {}
            return base.CheckoutResult(
                external_id=str(data["id"]), external_payment_id=str(data["id"]),
                pix_qr_code=pix.get("qr_code", ""), pix_qr_code_base64=pix.get("qr_code_base64", ""),
                redirect_url=pix.get("ticket_url", ""),
            )
        body = {
            "items": [{
                "id": payment.kind, "title": str(payment.description), "quantity": 1,
                "currency_id": payment.currency, "unit_price": amount,
            }],
            "external_reference": reference,
            "back_urls": {"success": success_url, "pending": success_url, "failure": cancel_url},
            "auto_return": "approved",
        }
        data = self._check(self._sdk().preference().create(body), _("the checkout"))
        return base.CheckoutResult(external_id=str(data["id"]), redirect_url=data.get("init_point", ""))

    def _fetch(self, payment_id: str) -> tuple[base.PaymentConfirmation, str]:
        data = self._check(self._sdk().payment().get(payment_id), _("the payment query"))
        confirmation = base.PaymentConfirmation(
            status=STATUSES.get(data.get("status", ""), "pending"),
            amount=Decimal(str(data.get("transaction_amount", "0"))).quantize(Decimal("0.01")),
            currency=(data.get("currency_id") or "").upper(),
            external_payment_id=str(data.get("id", "")),
        )
        return confirmation, data.get("external_reference") or ""

    def fetch_payment(self, external_payment_id: str) -> base.PaymentConfirmation:
        return self._fetch(external_payment_id)[0]

    def parse_webhook(self, request: HttpRequest) -> base.WebhookEvent:
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            raise base.WebhookRejected("mercadopago: body is not JSON")
        if not isinstance(payload, dict):
            raise base.WebhookRejected("mercadopago: body is not an object")
        data_id = request.GET.get("data.id") or str((payload.get("data") or {}).get("id") or "")
        # Mercado Pago signs alphanumeric ids in lower case.
        data_id = data_id.lower()
        request_id = request.headers.get("x-request-id", "")
        try:
            WebhookSignatureValidator.validate(
                request.headers.get("x-signature"), request_id, data_id, settings.MERCADOPAGO_WEBHOOK_SECRET,
                tolerance_seconds=settings.BILLING_WEBHOOK_TOLERANCE,
            )
        except InvalidWebhookSignatureError as exc:
            raise base.WebhookRejected(f"mercadopago signature: {exc.reason.value}")
        topic = payload.get("type") or request.GET.get("type") or ""
        event_id = str(payload.get("id") or f"{topic}:{data_id}:{request_id}")
        event = base.WebhookEvent(
            event_id=event_id, event_type=payload.get("action") or topic, payload=payload
        )
        if topic == "payment" and data_id:
            # The notification only says "look at payment X": its state comes from the API.
            confirmation, reference = self._fetch(data_id)
            event.action = base.PAYMENT
            event.reference = reference
            event.external_id = data_id
            event.confirmation = confirmation
            event.extra = {"fetched_payment": data_id}
        return event

    def confirm_return(self, payment, params):
        payment_id = params.get("payment_id") or params.get("collection_id") or payment.external_payment_id
        if not payment_id or payment_id == "null":
            return None
        confirmation, reference = self._fetch(str(payment_id))
        # The query string is the buyer's: only a payment that names our reference counts.
        return confirmation if reference == str(payment.reference) else None

    def cancel_subscription(self, subscription_id: str) -> None:
        """Plans paid through Mercado Pago are prepaid months: nothing recurs at the provider."""
        return None
