"""Mercado Pago: Checkout Pro preferences (card, boleto...) and PIX payments with their QR code."""
import hashlib
from decimal import Decimal

import mercadopago
import requests
from django.conf import settings
from django.http import HttpRequest
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


def _signed_ts(x_signature: str) -> str:
    """The ts= of an x-signature header (already verified)."""
    for part in x_signature.split(","):
        key, _sep, value = part.partition("=")
        if key.strip().lower() == "ts":
            return value.strip()
    return ""


class MercadoPagoGateway(base.PaymentGateway):
    code = "mercadopago"
    label = "Mercado Pago"
    supports_pix = True
    provider_errors = (mercadopago.MercadoPagoError, requests.RequestException)

    def is_unavailable(self, exc: Exception) -> bool:
        if isinstance(exc, mercadopago.MercadoPagoError):
            return exc.status_code == 0 or exc.status_code >= 500 or exc.status_code in (423, 424, 429)
        return super().is_unavailable(exc)

    @classmethod
    def is_configured(cls) -> bool:
        return bool(settings.MERCADOPAGO_ACCESS_TOKEN and settings.MERCADOPAGO_WEBHOOK_SECRET)

    def _sdk(self) -> mercadopago.SDK:
        return mercadopago.SDK(
            settings.MERCADOPAGO_ACCESS_TOKEN, request_options=RequestOptions(connection_timeout=30.0, max_retries=0)
        )

    def _check(self, result: dict, what: str) -> dict:
        status = int(result.get("status") or 0)
        body = result.get("response")
        if not 200 <= status < 300 or not isinstance(body, dict):
            message = body.get("message", "") if isinstance(body, dict) else ""
            raise self.refusal_for_status(status, f"{what}: HTTP {status} {message}".strip())
        return body

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
            data = self._check(self._sdk().payment().create(body, options), "POST /v1/payments (PIX)")
            pix = (data.get("point_of_interaction") or {}).get("transaction_data") or {}
            code = pix.get("qr_code", "")
            return base.CheckoutResult(
                external_id=str(data["id"]), external_payment_id=str(data["id"]), pix_qr_code=code,
                # The image Mercado Pago sends; drawn from the code when it sends none.
                pix_qr_code_base64=pix.get("qr_code_base64") or (base.qr_png_base64(code) if code else ""),
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
        data = self._check(self._sdk().preference().create(body), "POST /checkout/preferences")
        return base.CheckoutResult(external_id=str(data["id"]), redirect_url=data.get("init_point", ""))

    def _fetch(self, payment_id: str) -> tuple[base.PaymentConfirmation, str]:
        data = self._check(self._sdk().payment().get(payment_id), "GET /v1/payments")
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
        payload = base.json_object(request.body or b"{}", "mercadopago")
        # x-signature signs "id:<data.id>;request-id:<x-request-id>;ts:<ts>;" with data.id from the query
        # string (alphanumeric ids in lower case). Nothing in the body is signed.
        data_id = request.GET.get("data.id", "").strip().lower()
        request_id = request.headers.get("x-request-id", "").strip()
        x_signature = request.headers.get("x-signature", "")
        try:
            WebhookSignatureValidator.validate(
                x_signature, request_id, data_id, settings.MERCADOPAGO_WEBHOOK_SECRET,
                tolerance_seconds=settings.BILLING_WEBHOOK_TOLERANCE,
            )
        except InvalidWebhookSignatureError as exc:
            raise base.WebhookRejected(f"mercadopago signature: {exc.reason.value}")
        data = base.member(payload, "data")
        if "id" in data and str(data["id"]).strip().lower() != data_id:
            raise base.WebhookRejected("mercadopago: the body names another resource than the signed data.id")
        topic = str(payload.get("type") or request.GET.get("type") or "")
        # The de-duplication key comes only from what was signed: one signed delivery is one event, whatever
        # unsigned notification id or topic a replay puts in the body. The topic only decides whether a
        # payment is fetched; a replay under another topic gets its own row and cannot pre-empt the real one.
        manifest = f"id:{data_id};request-id:{request_id};ts:{_signed_ts(x_signature)};"
        if len(manifest) > 180:
            manifest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        kind = "payment" if topic == "payment" else "other"
        event = base.WebhookEvent(
            event_id=f"{kind}:{manifest}", event_type=str(payload.get("action") or topic)[:100], payload=payload
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
        payment_id = str(params.get("payment_id") or params.get("collection_id") or payment.external_payment_id)
        if not payment_id.isdigit():
            return None  # none yet ("null"), or not a Mercado Pago payment id: never put into the API path
        confirmation, reference = self._fetch(payment_id)
        # The query string is the buyer's: only a payment that names our reference counts.
        return confirmation if reference == str(payment.reference) else None

    def cancel_subscription(self, subscription_id: str) -> None:
        """Plans paid through Mercado Pago are prepaid months: nothing recurs at the provider."""
        return None
