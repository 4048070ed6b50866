"""PayPal: Orders v2 over REST; webhooks verified by PayPal's verify-webhook-signature call."""
import json
import time

import pytest
import responses
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import GatewayEvent, Payment, Subscription

from .conftest import (
    PAYPAL_API,
    PAYPAL_WEBHOOK_ID,
    paypal_capture_event,
    paypal_headers,
    paypal_order,
    paypal_token,
    paypal_verification,
    pending_payment,
    plan,
    post_paypal,
)

pytestmark = pytest.mark.django_db


def test_order_checkout_and_capture_on_return(gateway_settings, owner_client, provider):
    paypal_token(provider)
    create = provider.add(responses.POST, f"{PAYPAL_API}/v2/checkout/orders", status=200, json={
        "id": "5O190127TN364715T", "status": "PAYER_ACTION_REQUIRED",
        "payment_source": {"paypal": {}},
        "links": [
            {"href": f"{PAYPAL_API}/v2/checkout/orders/5O190127TN364715T", "rel": "self", "method": "GET"},
            {"href": "https://www.sandbox.paypal.com/checkoutnow?token=5O190127TN364715T", "rel": "payer-action",
             "method": "GET"},
        ],
    })
    response = owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "paypal"})
    assert response.url == "https://www.sandbox.paypal.com/checkoutnow?token=5O190127TN364715T"
    sent = json.loads(create.calls[0].request.body)
    with scopes_disabled():
        payment = Payment.objects.get(tenant=owner_client.tenant)
    assert sent["purchase_units"][0]["amount"] == {"currency_code": "BRL", "value": "49.90"}
    assert sent["purchase_units"][0]["custom_id"] == str(payment.reference)
    assert create.calls[0].request.headers["PayPal-Request-Id"] == str(payment.reference)
    assert create.calls[0].request.headers["Authorization"].startswith("Bearer A21AAF")

    order_url = f"{PAYPAL_API}/v2/checkout/orders/5O190127TN364715T"
    provider.add(responses.GET, order_url, json=paypal_order("5O190127TN364715T", reference=str(payment.reference),
                                                             status="APPROVED"))
    capture = provider.add(responses.POST, order_url + "/capture", status=201,
                           json=paypal_order("5O190127TN364715T", reference=str(payment.reference)))
    # A return naming another order is not ours to capture.
    owner_client.get(reverse("billing_return", args=[payment.reference]) + "?token=OTHERORDER&PayerID=X")
    assert capture.call_count == 0
    owner_client.get(reverse("billing_return", args=[payment.reference]) + "?token=5O190127TN364715T&PayerID=X")
    assert capture.call_count == 1
    assert limits.credit_balance(owner_client.tenant) == 1000
    payment.refresh_from_db()
    assert payment.status == "paid" and payment.external_payment_id == "3C679366HH908993F"


def test_verified_capture_event_is_confirmed_with_the_order(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="paypal", external_id="8AA831015G517922L")
    paypal_token(provider)
    verify = paypal_verification(provider, "SUCCESS")
    provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/8AA831015G517922L",
                 json=paypal_order("8AA831015G517922L", reference=str(payment.reference)))
    event = paypal_capture_event("8AA831015G517922L", reference=str(payment.reference))
    response = post_paypal(client, event)
    assert response.status_code == 200 and response.json()["result"] == "applied"
    sent = json.loads(verify.calls[0].request.body)
    assert sent["webhook_id"] == PAYPAL_WEBHOOK_ID and sent["webhook_event"] == event
    assert sent["transmission_id"] == "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    assert sent["auth_algo"] == "SHA256withRSA"
    assert limits.credit_balance(tenant) == 1000
    # Replayed: applied once.
    assert post_paypal(client, event).status_code == 200
    assert limits.credit_balance(tenant) == 1000
    assert GatewayEvent.objects.get(gateway="paypal").deliveries == 2


def test_failed_verification_is_rejected(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="paypal", external_id="8AA831015G517922M")
    paypal_token(provider)
    paypal_verification(provider, "FAILURE")
    order = provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/8AA831015G517922M",
                         json=paypal_order("8AA831015G517922M", reference=str(payment.reference)))
    response = post_paypal(client, paypal_capture_event("8AA831015G517922M", reference=str(payment.reference)))
    assert response.status_code == 400
    assert order.call_count == 0 and not GatewayEvent.objects.exists()
    assert limits.credit_balance(tenant) == 0


def test_stale_or_unsigned_transmissions_are_rejected_without_asking_paypal(gateway_settings, client, provider):
    verify = paypal_verification(provider, "SUCCESS")
    event = paypal_capture_event("ORDER1", reference="x")
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    assert post_paypal(client, event, **paypal_headers(transmission_time=old)).status_code == 400
    headers = paypal_headers()
    del headers["HTTP_PAYPAL_TRANSMISSION_SIG"]
    assert post_paypal(client, event, **headers).status_code == 400
    assert verify.call_count == 0


def test_amount_mismatch_from_the_order_is_recorded(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="paypal", external_id="8AA831015G517922N")
    paypal_token(provider)
    paypal_verification(provider)
    provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/8AA831015G517922N",
                 json=paypal_order("8AA831015G517922N", reference=str(payment.reference), value="0.99"))
    # The event claims the right amount; the order PayPal's API returns says otherwise, and wins.
    response = post_paypal(client, paypal_capture_event("8AA831015G517922N", reference=str(payment.reference)))
    assert response.json()["result"] == "mismatch"
    assert limits.credit_balance(tenant) == 0


def test_unknown_event_types_are_ignored(gateway_settings, client, provider):
    paypal_token(provider)
    paypal_verification(provider)
    event = {"id": "WH-OTHER", "event_type": "CUSTOMER.DISPUTE.CREATED", "resource": {}}
    response = post_paypal(client, event)
    assert response.status_code == 200 and response.json()["result"] == "ignored"


def sale_completed(subscription_id: str, sale_id: str, *, event_id: str) -> dict:
    """PAYMENT.SALE.COMPLETED for a subscription charge, as PayPal posts it."""
    return {
        "id": event_id, "event_version": "1.0", "resource_type": "sale", "event_type": "PAYMENT.SALE.COMPLETED",
        "summary": "Payment completed for BRL 197.00 BRL",
        "resource": {"id": sale_id, "state": "completed", "billing_agreement_id": subscription_id,
                     "amount": {"total": "197.00", "currency": "BRL"}, "payment_mode": "INSTANT_TRANSFER"},
    }


def paypal_subscription(subscription_id: str, *, value: str = "197.00", next_billing: str = "2026-07-01T10:00:00Z"):
    """GET /v1/billing/subscriptions/{id} of an active subscription."""
    return {
        "id": subscription_id, "plan_id": "P-5ML4271244454362WXNWU5NQ", "status": "ACTIVE", "custom_id": "ref",
        "billing_info": {
            "outstanding_balance": {"currency_code": "BRL", "value": "0.00"},
            "last_payment": {"amount": {"currency_code": "BRL", "value": value}, "time": "2026-06-01T10:00:00Z"},
            "next_billing_time": next_billing, "failed_payments_count": 0,
        },
    }


def test_subscription_checkout_first_charge_and_renewal(gateway_settings, owner_client, client, provider):
    business = plan("BUSINESS")
    business.paypal_plan_id = "P-5ML4271244454362WXNWU5NQ"
    business.save()
    paypal_token(provider)
    create = provider.add(responses.POST, f"{PAYPAL_API}/v1/billing/subscriptions", status=201, json={
        "id": "I-BW452GLLEP1G", "status": "APPROVAL_PENDING",
        "links": [{"href": "https://www.sandbox.paypal.com/webapps/billing/subscriptions?ba_token=BA-2M539689T3856352J",
                   "rel": "approve", "method": "GET"}],
    })
    response = owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "paypal"})
    assert "ba_token=BA-2M539689T3856352J" in response.url
    sent = json.loads(create.calls[0].request.body)
    assert sent["plan_id"] == "P-5ML4271244454362WXNWU5NQ"
    tenant = owner_client.tenant

    paypal_verification(provider)
    provider.add(responses.GET, f"{PAYPAL_API}/v1/billing/subscriptions/I-BW452GLLEP1G",
                 json=paypal_subscription("I-BW452GLLEP1G"))
    first = post_paypal(client, sale_completed("I-BW452GLLEP1G", "80021663DE681814L", event_id="WH-SALE-1"))
    assert first.json()["result"] == "applied"
    assert limits.chip_limit(tenant) == 3
    with scopes_disabled():
        subscription = Subscription.objects.get(tenant=tenant)
    assert (subscription.gateway, subscription.external_id) == ("paypal", "I-BW452GLLEP1G")

    provider.replace(responses.GET, f"{PAYPAL_API}/v1/billing/subscriptions/I-BW452GLLEP1G",
                     json=paypal_subscription("I-BW452GLLEP1G", next_billing="2026-08-01T10:00:00Z"))
    second = post_paypal(client, sale_completed("I-BW452GLLEP1G", "80021663DE681815M", event_id="WH-SALE-2"))
    assert second.json()["result"] == "applied"
    subscription.refresh_from_db()
    assert subscription.current_period_end.isoformat().startswith("2026-08-01")
    with scopes_disabled():
        assert Payment.objects.filter(tenant=tenant, status="paid").count() == 2

    cancel = provider.add(responses.POST, f"{PAYPAL_API}/v1/billing/subscriptions/I-BW452GLLEP1G/cancel",
                          status=204)
    owner_client.post(reverse("billing_downgrade"))
    assert cancel.call_count == 1 and limits.chip_limit(tenant) == 1
