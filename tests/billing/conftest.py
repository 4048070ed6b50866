"""Billing test helpers: gateway credentials, provider signatures and payloads shaped like their docs.

The providers cannot be reached from here, so they are faked at the HTTP boundary with
`responses`; the signatures are computed the way each provider computes them.
"""
import hashlib
import hmac
import json
import time

import pytest
import responses
from django_scopes import scopes_disabled

from billing.gateways import paypal as paypal_module
from billing.models import Payment, Plan

STRIPE_KEY = "sk_test_51WhagoTestKey"
STRIPE_SECRET = "whsec_test_whago_signing_secret"
MP_TOKEN = "TEST-1234567890-112233-abcdef"
MP_SECRET = "mp-webhook-secret-signature"
PAYPAL_ID = "paypal-client-id"
PAYPAL_SECRET = "paypal-client-secret"
PAYPAL_WEBHOOK_ID = "8PT597110X687430LKGECATA"
PAYPAL_API = "https://api-m.sandbox.paypal.com"
MP_API = "https://api.mercadopago.com"
STRIPE_API = "https://api.stripe.com"
# A 1x1 PNG, as Mercado Pago returns the PIX QR code image (base64).
PIX_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture
def gateway_settings(settings):
    """All four gateways configured, as the environment would configure them."""
    settings.STRIPE_SECRET_KEY = STRIPE_KEY
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MERCADOPAGO_ACCESS_TOKEN = MP_TOKEN
    settings.MERCADOPAGO_WEBHOOK_SECRET = MP_SECRET
    settings.PAYPAL_CLIENT_ID = PAYPAL_ID
    settings.PAYPAL_CLIENT_SECRET = PAYPAL_SECRET
    settings.PAYPAL_WEBHOOK_ID = PAYPAL_WEBHOOK_ID
    settings.PAYPAL_MODE = "sandbox"
    settings.BILLING_SANDBOX_ENABLED = True
    settings.BILLING_WEBHOOK_TOLERANCE = 300
    settings.SITE_URL = "http://127.0.0.1:8000"
    return settings


@pytest.fixture(autouse=True)
def _fresh_paypal_token():
    """PayPal's access token is cached per process: each test starts without one."""
    paypal_module._token.clear()
    yield
    paypal_module._token.clear()


@pytest.fixture
def provider():
    """The providers' HTTP APIs, faked; any call not registered fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def plan(code: str) -> Plan:
    return Plan.objects.get(code=code)


def pending_payment(tenant, *, gateway: str, external_id: str, kind: str = "credits", amount="49.90",
                    credits: int = 1000, plan_code: str | None = None, **extra) -> Payment:
    """A payment as start_checkout leaves it: pending, with the gateway's checkout id."""
    fields = {"credits": credits} if kind == "credits" else {"plan": plan(plan_code), "credits": 0}
    with scopes_disabled():
        return Payment.objects.create(
            tenant=tenant, kind=kind, amount=amount, currency="BRL", gateway=gateway, external_id=external_id,
            **fields, **extra,
        )


# --- Stripe: Stripe-Signature "t=<unix>,v1=<hex HMAC-SHA256(secret, 't.payload')>" -------------


def stripe_signature(payload: str, *, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def stripe_event(event_type: str, obj: dict, *, event_id: str = "evt_1QwhagoTest0001") -> str:
    """An Event object as Stripe posts it (API version 2025-x, snapshot payload)."""
    return json.dumps({
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    })


def stripe_session(session_id: str, *, mode: str = "payment", amount_total: int = 4990, currency: str = "brl",
                   payment_status: str = "paid", reference: str = "", subscription: str | None = None) -> dict:
    """A Checkout Session object (the data.object of checkout.session.* events)."""
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "client_reference_id": reference,
        "currency": currency,
        "customer": "cus_RwhagoTest" if mode == "subscription" else None,
        "livemode": False,
        "metadata": {"payment_reference": reference},
        "mode": mode,
        "payment_intent": "pi_3QwhagoTest" if mode == "payment" else None,
        "payment_status": payment_status,
        "status": "complete",
        "subscription": subscription,
        "url": None,
    }


def post_stripe(client, payload: str, signature: str | None = None):
    return client.post(
        "/api/v1/webhooks/billing/stripe", data=payload, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature if signature is not None else stripe_signature(payload),
    )


# --- Mercado Pago: x-signature "ts=<unix>,v1=<hex HMAC-SHA256(secret, manifest)>" ----------------


def mp_signature(data_id: str, request_id: str, *, secret: str = MP_SECRET, ts: int | None = None) -> str:
    ts = int(time.time()) if ts is None else ts
    manifest = f"id:{data_id};request-id:{request_id};ts:{ts};"
    return f"ts={ts},v1={hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()}"


def mp_notification(payment_id: str, *, notification_id: int = 112233445566, action: str = "payment.updated") -> dict:
    """The body Mercado Pago posts for a payment (Webhooks, topic payment)."""
    return {
        "id": notification_id,
        "live_mode": False,
        "type": "payment",
        "date_created": "2026-05-25T13:01:08.000-03:00",
        "user_id": 987654321,
        "api_version": "v1",
        "action": action,
        "data": {"id": payment_id},
    }


def mp_payment(payment_id: str, *, reference: str, status: str = "approved", amount: float = 49.9,
               currency: str = "BRL", pix: bool = True) -> dict:
    """GET /v1/payments/{id} as documented."""
    body = {
        "id": int(payment_id),
        "date_created": "2026-05-25T13:01:02.000-03:00",
        "date_approved": "2026-05-25T13:01:08.000-03:00" if status == "approved" else None,
        "status": status,
        "status_detail": "accredited" if status == "approved" else "pending_waiting_transfer",
        "currency_id": currency,
        "transaction_amount": amount,
        "transaction_amount_refunded": 0,
        "payment_method_id": "pix" if pix else "visa",
        "payment_type_id": "bank_transfer" if pix else "credit_card",
        "external_reference": reference,
        "payer": {"email": "test_user@testuser.com"},
    }
    if pix:
        body["point_of_interaction"] = {"type": "PIX", "transaction_data": {
            "qr_code": "00020126360014BR.GOV.BCB.PIX0114+5511999998888520400005303986540549.905802BR",
            "qr_code_base64": PIX_PNG,
            "ticket_url": f"https://www.mercadopago.com.br/payments/{payment_id}/ticket",
        }}
    return body


def post_mp(client, payment_id: str, *, request_id: str = "f7b2a1d4-0b1c-4ec2-aaaa-9e8b1d2f3c4d",
            signature: str | None = None, body: dict | None = None):
    return client.post(
        f"/api/v1/webhooks/billing/mercadopago?data.id={payment_id}&type=payment",
        data=json.dumps(body or mp_notification(payment_id)), content_type="application/json",
        HTTP_X_SIGNATURE=signature if signature is not None else mp_signature(payment_id, request_id),
        HTTP_X_REQUEST_ID=request_id,
    )


# --- PayPal: transmission headers, checked by POST /v1/notifications/verify-webhook-signature ----


def paypal_headers(*, transmission_time: str | None = None) -> dict:
    when = transmission_time or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "HTTP_PAYPAL_AUTH_ALGO": "SHA256withRSA",
        "HTTP_PAYPAL_CERT_URL": f"{PAYPAL_API}/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "HTTP_PAYPAL_TRANSMISSION_ID": "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
        "HTTP_PAYPAL_TRANSMISSION_SIG": "lmI95Jx3Y9nhR5SJWlHVIWpg4AgFk7n9bCHSRxbrd8A9zrhdu2rMyFrmz+Zjh3s3boXB07VX==",
        "HTTP_PAYPAL_TRANSMISSION_TIME": when,
    }


def paypal_token(rsps) -> None:
    rsps.add(responses.POST, f"{PAYPAL_API}/v1/oauth2/token", json={
        "scope": "https://uri.paypal.com/services/payments/payment",
        "access_token": "A21AAFEpH4PsADK7qSS7pSRsgzfENtu-Q1ysgEDVDESseMHBYXVJYE8ovjj68elIDy8nF26AwPhfX",
        "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": 31668,
    })


def paypal_verification(rsps, status: str = "SUCCESS"):
    return rsps.add(responses.POST, f"{PAYPAL_API}/v1/notifications/verify-webhook-signature",
                    json={"verification_status": status})


def paypal_order(order_id: str, *, reference: str, status: str = "COMPLETED", value: str = "49.90",
                 currency: str = "BRL") -> dict:
    """GET /v2/checkout/orders/{id} of a captured order, as documented."""
    unit = {"reference_id": reference, "custom_id": reference,
            "amount": {"currency_code": currency, "value": value}}
    if status == "COMPLETED":
        unit["payments"] = {"captures": [{
            "id": "3C679366HH908993F", "status": "COMPLETED", "amount": {"currency_code": currency, "value": value},
            "final_capture": True, "custom_id": reference,
        }]}
    return {"id": order_id, "intent": "CAPTURE", "status": status, "purchase_units": [unit],
            "links": [{"href": f"{PAYPAL_API}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"}]}


def paypal_capture_event(order_id: str, *, reference: str, value: str = "49.90",
                         event_id: str = "WH-58D329510W468432D-8HN650336L201105X") -> dict:
    return {
        "id": event_id,
        "event_version": "1.0",
        "create_time": "2026-05-25T16:01:08.000Z",
        "resource_type": "capture",
        "resource_version": "2.0",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "summary": f"Payment completed for BRL {value}",
        "resource": {
            "id": "3C679366HH908993F", "status": "COMPLETED", "custom_id": reference,
            "amount": {"currency_code": "BRL", "value": value},
            "supplementary_data": {"related_ids": {"order_id": order_id}},
            "final_capture": True,
        },
        "links": [],
    }


def post_paypal(client, body: dict, **headers):
    return client.post("/api/v1/webhooks/billing/paypal", data=json.dumps(body), content_type="application/json",
                       **(headers or paypal_headers()))
