"""Stripe: Checkout Sessions created through the SDK, webhooks verified with Stripe-Signature."""
import json
import threading
import time
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import CreditLedger, GatewayEvent, Payment, Subscription
from billing.signals import plan_changed

from .conftest import (
    STRIPE_API,
    pending_payment,
    post_stripe,
    stripe_event,
    stripe_session,
    stripe_signature,
)

pytestmark = pytest.mark.django_db


def events():
    return GatewayEvent.objects.filter(gateway="stripe")


def test_plan_checkout_creates_a_subscription_session(gateway_settings, owner_client, provider):
    call = provider.add(responses.POST, f"{STRIPE_API}/v1/checkout/sessions", json={
        "id": "cs_test_a1B2c3", "object": "checkout.session", "mode": "subscription", "status": "open",
        "amount_total": 19700, "currency": "brl", "payment_status": "unpaid",
        "url": "https://checkout.stripe.com/c/pay/cs_test_a1B2c3",
    })
    response = owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "stripe"})
    assert response.status_code == 302
    assert response.url == "https://checkout.stripe.com/c/pay/cs_test_a1B2c3"
    sent = parse_qs(call.calls[0].request.body)
    assert call.calls[0].request.headers["Authorization"] == "Bearer sk_test_51WhagoTestKey"
    assert sent["mode"] == ["subscription"]
    assert sent["line_items[0][price_data][unit_amount]"] == ["19700"]
    assert sent["line_items[0][price_data][currency]"] == ["brl"]
    assert sent["line_items[0][price_data][recurring][interval]"] == ["month"]
    with scopes_disabled():
        payment = Payment.objects.get(tenant=owner_client.tenant)
    assert (payment.status, payment.external_id, payment.amount) == ("pending", "cs_test_a1B2c3", 197)
    assert sent["client_reference_id"] == [str(payment.reference)]


def test_credit_checkout_is_a_one_off_payment(gateway_settings, owner_client, provider):
    call = provider.add(responses.POST, f"{STRIPE_API}/v1/checkout/sessions", json={
        "id": "cs_test_credits", "object": "checkout.session", "mode": "payment",
        "url": "https://checkout.stripe.com/c/pay/cs_test_credits",
    })
    owner_client.post(reverse("billing_checkout"), {"credits": "5000", "gateway": "stripe"})
    sent = parse_qs(call.calls[0].request.body)
    assert sent["mode"] == ["payment"] and sent["line_items[0][price_data][unit_amount]"] == ["19990"]


def test_stripe_refusing_the_checkout_is_explained(gateway_settings, owner_client, provider):
    provider.add(responses.POST, f"{STRIPE_API}/v1/checkout/sessions", status=400, json={"error": {
        "type": "invalid_request_error", "message": "Invalid currency: xyz", "param": "currency"}})
    response = owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "stripe"}, follow=True)
    assert "Stripe" in response.content.decode()
    with scopes_disabled():
        assert Payment.objects.get(tenant=owner_client.tenant).status == "failed"


def test_paid_subscription_session_activates_the_plan(gateway_settings, client, make_owner,
                                                      django_capture_on_commit_callbacks):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_sub1", kind="plan", amount="197.00",
                              plan_code="BUSINESS")
    received = []
    plan_changed.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="test-stripe")
    try:
        payload = stripe_event("checkout.session.completed", stripe_session(
            "cs_test_sub1", mode="subscription", amount_total=19700, reference=str(payment.reference),
            subscription="sub_1QwhagoTest"))
        with django_capture_on_commit_callbacks(execute=True):
            response = post_stripe(client, payload)
    finally:
        plan_changed.disconnect(dispatch_uid="test-stripe")
    assert response.status_code == 200 and response.json()["result"] == "applied"
    assert limits.chip_limit(tenant) == 3
    with scopes_disabled():
        subscription = Subscription.objects.get(tenant=tenant)
        payment.refresh_from_db()
    assert (subscription.plan.code, subscription.gateway, subscription.external_id) == (
        "BUSINESS", "stripe", "sub_1QwhagoTest")
    assert subscription.external_customer_id == "cus_RwhagoTest"
    assert payment.status == "paid" and payment.external_payment_id == ""
    assert [(r["old_plan"].code, r["new_plan"].code, r["tenant"]) for r in received] == [("FREE", "BUSINESS", tenant)]


def test_forged_signature_is_rejected_and_nothing_applied(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_forged")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_forged",
                                                                       reference=str(payment.reference)))
    forged = stripe_signature(payload, secret="whsec_attacker")
    assert post_stripe(client, payload, forged).status_code == 400
    tampered = payload.replace('"amount_total": 4990', '"amount_total": 1')
    assert post_stripe(client, tampered, stripe_signature(payload)).status_code == 400
    assert post_stripe(client, payload, "").status_code == 400
    assert not events().exists()
    assert limits.credit_balance(tenant) == 0


def test_stale_timestamp_is_rejected(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_stale")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_stale",
                                                                       reference=str(payment.reference)))
    stale = stripe_signature(payload, timestamp=int(time.time()) - 301)
    assert post_stripe(client, payload, stale).status_code == 400
    assert limits.credit_balance(tenant) == 0 and not events().exists()


def test_replayed_event_is_applied_once(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_replay")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_replay",
                                                                       reference=str(payment.reference)))
    for _ in range(3):
        assert post_stripe(client, payload).status_code == 200
    assert limits.credit_balance(tenant) == 1000
    event = events().get()
    assert (event.result, event.deliveries, event.payment_id) == ("applied", 3, payment.pk)
    assert event.payload["data"]["object"]["id"] == "cs_test_replay" and event.processed_at


def test_amount_is_checked_against_our_payment(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_cheap")
    # Correctly signed, but for R$ 0.50 instead of our R$ 49.90: recorded, not applied.
    payload = stripe_event("checkout.session.completed", stripe_session(
        "cs_test_cheap", amount_total=50, reference=str(payment.reference)))
    assert post_stripe(client, payload).status_code == 200
    event = events().get()
    assert event.result == "mismatch" and "49.90 BRL" in event.detail
    payment.refresh_from_db()
    assert payment.status == "pending" and limits.credit_balance(tenant) == 0
    other_currency = stripe_event("checkout.session.completed", stripe_session(
        "cs_test_cheap", currency="usd", reference=str(payment.reference)), event_id="evt_usd")
    post_stripe(client, other_currency)
    assert events().get(event_id="evt_usd").result == "mismatch" and limits.credit_balance(tenant) == 0


def test_unknown_event_types_are_ignored_with_200(gateway_settings, client):
    payload = stripe_event("customer.created", {"id": "cus_123", "object": "customer"}, event_id="evt_other")
    response = post_stripe(client, payload)
    assert response.status_code == 200 and response.json()["result"] == "ignored"
    assert events().get().result == "ignored"


def test_an_event_for_someone_elses_session_changes_nothing(gateway_settings, client, make_owner):
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_not_ours"))
    assert post_stripe(client, payload).json()["result"] == "unknown_payment"


def test_renewal_and_cancellation_of_the_subscription(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_sub2", kind="plan", amount="597.00",
                              plan_code="ENTERPRISE")
    post_stripe(client, stripe_event("checkout.session.completed", stripe_session(
        "cs_test_sub2", mode="subscription", amount_total=59700, reference=str(payment.reference),
        subscription="sub_renew"), event_id="evt_first"))
    period_end = int(time.time()) + 60 * 86400
    invoice = {"id": "in_1Qrenewal", "object": "invoice", "billing_reason": "subscription_cycle",
               "amount_paid": 59700, "currency": "brl", "status": "paid",
               "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_renew"}},
               "lines": {"data": [{"period": {"start": int(time.time()), "end": period_end}}]}}
    renewal = post_stripe(client, stripe_event("invoice.paid", invoice, event_id="evt_renew"))
    assert renewal.json()["result"] == "applied"
    with scopes_disabled():
        subscription = Subscription.objects.get(tenant=tenant)
        assert int(subscription.current_period_end.timestamp()) == period_end
        assert Payment.objects.filter(tenant=tenant, status="paid").count() == 2

    post_stripe(client, stripe_event("invoice.payment_failed", dict(invoice, id="in_2"), event_id="evt_failed"))
    subscription.refresh_from_db()
    assert subscription.status == "past_due" and limits.chip_limit(tenant) == 10

    deleted = {"id": "sub_renew", "object": "subscription", "status": "canceled"}
    post_stripe(client, stripe_event("customer.subscription.deleted", deleted, event_id="evt_deleted"))
    subscription.refresh_from_db()
    assert subscription.plan.code == "FREE" and limits.chip_limit(tenant) == 1


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_apply_once(gateway_settings, live_server, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_race")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_race",
                                                                       reference=str(payment.reference)),
                           event_id="evt_race")
    headers = {"Stripe-Signature": stripe_signature(payload), "Content-Type": "application/json"}
    url = live_server.url + "/api/v1/webhooks/billing/stripe"
    barrier, statuses = threading.Barrier(10), []

    def deliver():
        barrier.wait()
        statuses.append(requests.post(url, data=payload, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 10
    with scopes_disabled():
        assert CreditLedger.objects.filter(tenant=tenant, reason="purchase").count() == 1
    assert limits.credit_balance(tenant) == 1000
    event = GatewayEvent.objects.get(gateway="stripe", event_id="evt_race")
    assert event.result == "applied" and event.deliveries == 10
    assert json.loads(payload)["id"] == event.event_id
