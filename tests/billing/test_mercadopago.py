"""Mercado Pago: PIX and Checkout Pro through the SDK; x-signature verified, then the payment fetched."""
import json
import threading
import time

import pytest
import requests
import responses
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import CreditLedger, GatewayEvent, Payment

from .conftest import MP_API, PIX_PNG, mp_payment, mp_signature, pending_payment, plan, post_mp

pytestmark = pytest.mark.django_db


def test_pix_checkout_shows_the_qr_code_in_the_portal(gateway_settings, owner_client, provider):
    call = provider.add(responses.POST, f"{MP_API}/v1/payments", status=201, json={
        **mp_payment("1234567890", reference="set-below", status="pending"),
        "status_detail": "pending_waiting_transfer",
    })
    response = owner_client.post(reverse("billing_checkout"),
                                 {"plan": "BUSINESS", "gateway": "mercadopago", "method": "pix"})
    with scopes_disabled():
        payment = Payment.objects.get(tenant=owner_client.tenant)
    assert response.status_code == 302 and response.url == reverse("billing_payment", args=[payment.reference])
    sent = json.loads(call.calls[0].request.body)
    assert sent["payment_method_id"] == "pix" and sent["transaction_amount"] == 197.0
    assert sent["external_reference"] == str(payment.reference)
    assert "notification_url" not in sent  # deprecated and unsigned: the signed Webhook is configured instead
    assert call.calls[0].request.headers["x-idempotency-key"] == str(payment.reference)
    assert call.calls[0].request.headers["Authorization"] == "Bearer TEST-1234567890-112233-abcdef"
    assert (payment.method, payment.external_id, payment.external_payment_id) == ("pix", "1234567890", "1234567890")
    page = owner_client.get(response.url).content.decode()
    assert "00020126360014BR.GOV.BCB.PIX" in page
    assert f"data:image/png;base64,{PIX_PNG}" in page


def test_checkout_pro_preference_redirects_to_init_point(gateway_settings, owner_client, provider):
    call = provider.add(responses.POST, f"{MP_API}/checkout/preferences", status=201, json={
        "id": "202809963-920c288b-4ebb-40be-966f-700250fa5370", "collector_id": 202809963,
        "init_point": "https://www.mercadopago.com.br/checkout/v1/redirect?pref_id=202809963-920c288b",
        "sandbox_init_point": "https://sandbox.mercadopago.com.br/checkout/v1/redirect?pref_id=202809963-920c288b",
        "items": [],
    })
    response = owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "mercadopago"})
    assert response.url.startswith("https://www.mercadopago.com.br/checkout/v1/redirect")
    sent = json.loads(call.calls[0].request.body)
    assert sent["items"][0]["unit_price"] == 49.9 and sent["items"][0]["currency_id"] == "BRL"
    assert sent["back_urls"]["success"].startswith("http://127.0.0.1:8000/cobranca/pagamentos/")


def test_signed_notification_fetches_the_payment_and_applies_it(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000111", method="pix")
    fetch = provider.add(responses.GET, f"{MP_API}/v1/payments/555000111",
                         json=mp_payment("555000111", reference=str(payment.reference)))
    signature = mp_signature("555000111", "f7b2a1d4-0b1c-4ec2-aaaa-9e8b1d2f3c4d")
    response = post_mp(client, "555000111", signature=signature)
    assert response.status_code == 200 and response.json()["result"] == "applied"
    assert fetch.call_count == 1
    assert limits.credit_balance(tenant) == 1000
    payment.refresh_from_db()
    assert payment.status == "paid" and payment.external_payment_id == "555000111"
    # Mercado Pago delivers the same signed request again: recorded, not applied twice.
    assert post_mp(client, "555000111", signature=signature).status_code == 200
    assert limits.credit_balance(tenant) == 1000
    assert GatewayEvent.objects.get(gateway="mercadopago").deliveries == 2


def test_forged_and_stale_signatures_are_rejected_before_any_fetch(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000222")
    fetch = provider.add(responses.GET, f"{MP_API}/v1/payments/555000222",
                         json=mp_payment("555000222", reference=str(payment.reference)))
    request_id = "f7b2a1d4-0b1c-4ec2-aaaa-9e8b1d2f3c4d"
    forged = mp_signature("555000222", request_id, secret="guessed")
    assert post_mp(client, "555000222", signature=forged).status_code == 400
    other_id = mp_signature("999", request_id)  # signed for another payment id
    assert post_mp(client, "555000222", signature=other_id).status_code == 400
    stale = mp_signature("555000222", request_id, ts=int(time.time()) - 3600)
    assert post_mp(client, "555000222", signature=stale).status_code == 400
    assert post_mp(client, "555000222", signature="").status_code == 400
    assert fetch.call_count == 0 and not GatewayEvent.objects.exists()
    assert limits.credit_balance(tenant) == 0


def test_amount_comes_from_the_api_and_is_checked(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000333", kind="plan",
                              amount="597.00", plan_code="ENTERPRISE")
    provider.add(responses.GET, f"{MP_API}/v1/payments/555000333",
                 json=mp_payment("555000333", reference=str(payment.reference), amount=1.0))
    assert post_mp(client, "555000333").json()["result"] == "mismatch"
    assert limits.chip_limit(tenant) == 1
    payment.refresh_from_db()
    assert payment.status == "pending" and "597.00 BRL" in payment.failure_reason


def test_pending_then_approved(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000444", kind="plan",
                              amount=str(plan("BUSINESS").price_brl), plan_code="BUSINESS")
    url = f"{MP_API}/v1/payments/555000444"
    provider.add(responses.GET, url, json=mp_payment("555000444", reference=str(payment.reference),
                                                     status="pending", amount=197.0))
    # Each notification is its own request (its own x-request-id, signed).
    assert post_mp(client, "555000444", request_id="req-created", body={
        "id": 1, "type": "payment", "action": "payment.created", "data": {"id": "555000444"}}
    ).json()["result"] == "ignored"
    provider.replace(responses.GET, url, json=mp_payment("555000444", reference=str(payment.reference),
                                                         amount=197.0))
    assert post_mp(client, "555000444", request_id="req-updated", body={
        "id": 2, "type": "payment", "action": "payment.updated", "data": {"id": "555000444"}}
    ).json()["result"] == "applied"
    assert limits.chip_limit(tenant) == 3


def test_unknown_topics_are_ignored(gateway_settings, client):
    body = {"id": 77, "type": "merchant_order", "action": "merchant_order.updated", "data": {"id": "888"}}
    response = post_mp(client, "888", body=body)
    assert response.status_code == 200 and response.json()["result"] == "ignored"


def test_buyer_return_only_counts_our_own_payment(gateway_settings, owner_client, make_owner, provider):
    payment = pending_payment(owner_client.tenant, gateway="mercadopago", external_id="pref-1")
    provider.add(responses.GET, f"{MP_API}/v1/payments/600", json=mp_payment("600", reference="someone-else"))
    provider.add(responses.GET, f"{MP_API}/v1/payments/601", json=mp_payment("601", reference=str(payment.reference)))
    owner_client.get(reverse("billing_return", args=[payment.reference]) + "?payment_id=600&status=approved")
    assert limits.credit_balance(owner_client.tenant) == 0
    owner_client.get(reverse("billing_return", args=[payment.reference]) + "?payment_id=601&status=approved")
    assert limits.credit_balance(owner_client.tenant) == 1000


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_notifications_apply_once(gateway_settings, live_server, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000999")
    barrier, statuses = threading.Barrier(10), []
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.add_passthru(live_server.url)
        rsps.add(responses.GET, f"{MP_API}/v1/payments/555000999",
                 json=mp_payment("555000999", reference=str(payment.reference)))
        request_id = "aaaa-bbbb"
        signature = mp_signature("555000999", request_id)
        headers = {"x-signature": signature, "x-request-id": request_id, "Content-Type": "application/json"}
        url = live_server.url + "/api/v1/webhooks/billing/mercadopago?data.id=555000999&type=payment"
        body = json.dumps({"id": 424242, "type": "payment", "action": "payment.updated",
                           "data": {"id": "555000999"}})

        def deliver():
            barrier.wait()
            statuses.append(requests.post(url, data=body, headers=headers, timeout=30).status_code)

        threads = [threading.Thread(target=deliver) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert statuses == [200] * 10
    with scopes_disabled():
        assert CreditLedger.objects.filter(tenant=tenant, reason="purchase").count() == 1
    # Keyed by what Mercado Pago signed (data.id, x-request-id, ts), not by the body's notification id.
    ts = signature.split(",")[0].removeprefix("ts=")
    event = GatewayEvent.objects.get(gateway="mercadopago")
    assert event.event_id == f"payment:id:555000999;request-id:{request_id};ts:{ts};"
    assert event.result == "applied" and event.deliveries == 10
