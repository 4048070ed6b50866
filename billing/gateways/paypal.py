"""PayPal REST: Orders v2 (create, capture) and webhooks verified by PayPal's own API."""
import threading
import time
from datetime import datetime
from decimal import Decimal

import requests
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from . import base

API = {"sandbox": "https://api-m.sandbox.paypal.com", "live": "https://api-m.paypal.com"}
HEADERS = ("PAYPAL-AUTH-ALGO", "PAYPAL-CERT-URL", "PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-SIG",
           "PAYPAL-TRANSMISSION-TIME")
CAPTURE_STATUSES = {"COMPLETED": "paid", "PENDING": "pending", "DECLINED": "failed", "FAILED": "failed",
                    "REFUNDED": "refunded", "PARTIALLY_REFUNDED": "refunded"}

_token_lock = threading.Lock()
_token: dict = {}


class PayPalGateway(base.PaymentGateway):
    code = "paypal"
    label = "PayPal"

    @classmethod
    def is_configured(cls) -> bool:
        return bool(settings.PAYPAL_CLIENT_ID and settings.PAYPAL_CLIENT_SECRET and settings.PAYPAL_WEBHOOK_ID)

    @property
    def api(self) -> str:
        return API.get(settings.PAYPAL_MODE, API["sandbox"])

    def _access_token(self) -> str:
        key = (self.api, settings.PAYPAL_CLIENT_ID)
        with _token_lock:
            cached = _token.get(key)
            if cached and cached[1] > time.monotonic() + 60:
                return cached[0]
            response = self._send(
                "post", "/v1/oauth2/token", auth=(settings.PAYPAL_CLIENT_ID, settings.PAYPAL_CLIENT_SECRET),
                data={"grant_type": "client_credentials"}, authenticated=False,
            )
            _token[key] = (response["access_token"], time.monotonic() + int(response.get("expires_in", 300)))
            return response["access_token"]

    def _send(self, method: str, path: str, *, authenticated: bool = True, ok=(200, 201), **kwargs) -> dict:
        headers = kwargs.pop("headers", {})
        if authenticated:
            headers["Authorization"] = f"Bearer {self._access_token()}"
        # Network errors (requests) become GatewayUnavailable in the base class, for every call.
        response = requests.request(method, self.api + path, headers=headers, timeout=30, **kwargs)
        if response.status_code not in ok:
            try:
                message = response.json().get("message", "")
            except (ValueError, AttributeError):
                message = ""
            raise self.refusal_for_status(response.status_code,
                                          f"{method.upper()} {path}: HTTP {response.status_code} {message}".strip())
        return response.json() if response.content else {}

    def create_checkout(self, payment, *, success_url, cancel_url, notification_url, method=""):
        reference = str(payment.reference)
        if payment.kind == "plan" and payment.plan.paypal_plan_id:
            return self._create_subscription(payment, success_url, cancel_url)
        body = {
            "intent": "CAPTURE",
            "purchase_units": [{
                "reference_id": reference,
                "custom_id": reference,
                "description": str(payment.description)[:127],
                "amount": {"currency_code": payment.currency, "value": f"{payment.amount:.2f}"},
            }],
            "payment_source": {"paypal": {"experience_context": {
                "brand_name": "WHAGO", "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING",
                "return_url": success_url, "cancel_url": cancel_url,
            }}},
        }
        order = self._send("post", "/v2/checkout/orders", json=body, headers={"PayPal-Request-Id": reference})
        approve = next((link["href"] for link in order.get("links", []) if link.get("rel") in ("payer-action",
                                                                                               "approve")), "")
        return base.CheckoutResult(external_id=order["id"], redirect_url=approve)

    def _create_subscription(self, payment, success_url: str, cancel_url: str) -> base.CheckoutResult:
        """A recurring PayPal subscription on the billing plan the operator linked to our plan."""
        reference = str(payment.reference)
        body = {
            "plan_id": payment.plan.paypal_plan_id,
            "custom_id": reference,
            "application_context": {
                "brand_name": "WHAGO", "user_action": "SUBSCRIBE_NOW", "shipping_preference": "NO_SHIPPING",
                "return_url": success_url, "cancel_url": cancel_url,
            },
        }
        subscription = self._send("post", "/v1/billing/subscriptions", json=body,
                                  headers={"PayPal-Request-Id": reference})
        approve = next((link["href"] for link in subscription.get("links", []) if link.get("rel") == "approve"), "")
        return base.CheckoutResult(external_id=subscription["id"], redirect_url=approve)

    def _subscription_confirmation(self, subscription_id: str, sale_id: str) -> base.PaymentConfirmation:
        """A subscription's last payment, as PayPal's API reports it."""
        subscription = self._send("get", f"/v1/billing/subscriptions/{subscription_id}")
        info = subscription.get("billing_info") or {}
        last = info.get("last_payment") or {}
        amount = last.get("amount") or {}
        next_billing = info.get("next_billing_time")
        return base.PaymentConfirmation(
            status="paid" if subscription.get("status") == "ACTIVE" and amount else "pending",
            amount=Decimal(amount.get("value") or "0").quantize(Decimal("0.01")),
            currency=(amount.get("currency_code") or "").upper(), external_payment_id=sale_id,
            subscription_id=subscription_id,
            period_end=datetime.fromisoformat(next_billing.replace("Z", "+00:00")) if next_billing else None,
        )

    @staticmethod
    def _order_confirmation(order: dict) -> base.PaymentConfirmation:
        unit = (order.get("purchase_units") or [{}])[0]
        captures = (unit.get("payments") or {}).get("captures") or []
        if captures:
            capture = captures[0]
            status = CAPTURE_STATUSES.get(capture.get("status", ""), "pending")
            amount = capture.get("amount") or {}
            capture_id = capture.get("id", "")
        else:
            status = "canceled" if order.get("status") == "VOIDED" else "pending"
            amount = unit.get("amount") or {}
            capture_id = ""
        return base.PaymentConfirmation(
            status=status, amount=Decimal(amount.get("value") or "0").quantize(Decimal("0.01")),
            currency=(amount.get("currency_code") or "").upper(), external_payment_id=capture_id,
        )

    def fetch_payment(self, external_payment_id: str) -> base.PaymentConfirmation:
        """external_payment_id is the order id: read it, and capture it when the buyer approved it."""
        order = self._send("get", f"/v2/checkout/orders/{external_payment_id}")
        if order.get("status") == "APPROVED":
            order = self._send(
                "post", f"/v2/checkout/orders/{external_payment_id}/capture", json={},
                headers={"PayPal-Request-Id": f"capture-{external_payment_id}"},
            )
        return self._order_confirmation(order)

    def confirm_return(self, payment, params):
        if payment.external_id.startswith("I-"):
            return None  # subscriptions are confirmed by PAYMENT.SALE.COMPLETED
        token = params.get("token", "")
        # The buyer's query string names the order; it must be the one we created.
        if not payment.external_id or token != payment.external_id:
            return None
        return self.fetch_payment(payment.external_id)

    def parse_webhook(self, request: HttpRequest) -> base.WebhookEvent:
        missing = [h for h in HEADERS if not request.headers.get(h)]
        if missing:
            raise base.WebhookRejected(f"paypal: missing headers {', '.join(missing)}")
        try:
            sent_at = datetime.fromisoformat(request.headers["PAYPAL-TRANSMISSION-TIME"].replace("Z", "+00:00"))
        except ValueError:
            raise base.WebhookRejected("paypal: bad transmission time")
        age = abs((timezone.now() - sent_at).total_seconds()) if sent_at.tzinfo else None
        if age is None or age > settings.BILLING_WEBHOOK_TOLERANCE:
            raise base.WebhookRejected("paypal: stale transmission time")
        # Checked before PayPal is asked: only an object can be an event.
        payload = base.json_object(request.body, "paypal")
        verification = self._send("post", "/v1/notifications/verify-webhook-signature", json={
            "auth_algo": request.headers["PAYPAL-AUTH-ALGO"],
            "cert_url": request.headers["PAYPAL-CERT-URL"],
            "transmission_id": request.headers["PAYPAL-TRANSMISSION-ID"],
            "transmission_sig": request.headers["PAYPAL-TRANSMISSION-SIG"],
            "transmission_time": request.headers["PAYPAL-TRANSMISSION-TIME"],
            "webhook_id": settings.PAYPAL_WEBHOOK_ID,
            "webhook_event": payload,
        })
        if verification.get("verification_status") != "SUCCESS":
            raise base.WebhookRejected(f"paypal verification: {verification.get('verification_status')}")
        # PayPal verified the whole event we sent it, id included: the id is signed data.
        event_type = str(payload.get("event_type") or "")
        resource = base.member(payload, "resource")
        event_id = payload.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise base.WebhookRejected("paypal event without id")
        event = base.WebhookEvent(event_id=event_id, event_type=event_type, payload=payload)
        order_id = ""
        if event_type == "CHECKOUT.ORDER.APPROVED":
            order_id = resource.get("id", "")
        elif event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED", "PAYMENT.CAPTURE.PENDING"):
            order_id = base.member(base.member(resource, "supplementary_data"), "related_ids").get("order_id", "")
        elif event_type == "PAYMENT.SALE.COMPLETED" and resource.get("billing_agreement_id"):
            # A subscription charge (first or recurring): amount and state from the subscription itself.
            event.action = base.PAYMENT
            event.external_id = event.subscription_id = resource["billing_agreement_id"]
            event.confirmation = self._subscription_confirmation(event.subscription_id, resource.get("id", ""))
        elif event_type == "BILLING.SUBSCRIPTION.CANCELLED":
            event.action = base.SUBSCRIPTION_CANCELED
            event.subscription_id = resource.get("id", "")
        if order_id:
            # The event only points at the order: its state and amount come from PayPal's API.
            event.action = base.PAYMENT
            event.external_id = order_id
            event.confirmation = self.fetch_payment(order_id)
        return event

    def cancel_subscription(self, subscription_id: str) -> None:
        self._send("post", f"/v1/billing/subscriptions/{subscription_id}/cancel",
                   json={"reason": "Plan changed in WHAGO"}, ok=(204, 200))
