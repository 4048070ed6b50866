"""Issue 17 (payments) and issue 18 item 7: what a buyer, a provider and an attacker see when things go wrong.

- the provider cannot be reached (requests raising ConnectionError / ReadTimeout at the HTTP boundary):
  checkout → a failed Payment with a plain pt-BR message and "Tentar novamente"; the buyer's return →
  a plain page; a signed webhook → 503 with Retry-After, nothing stored;
- replays: one valid signature reused with other, unsigned ids creates no new event rows;
- signed bodies that are not JSON objects → 400; Stripe timestamps outside the tolerance on either side → 400;
- technical details (hosts, proxies, English internals) are kept for operators, never shown to the buyer.
"""
import json
import time

import pytest
import requests
import responses
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import GatewayEvent, Payment

from .conftest import (
    MP_API,
    PAYPAL_API,
    STRIPE_API,
    mp_notification,
    mp_payment,
    mp_signature,
    paypal_capture_event,
    paypal_headers,
    paypal_order,
    paypal_token,
    paypal_verification,
    pending_payment,
    post_mp,
    post_paypal,
    post_stripe,
    stripe_event,
    stripe_session,
    stripe_signature,
)

pytestmark = pytest.mark.django_db

# What requests raises when a proxy or the provider cannot be reached: host and proxy in the text.
PROXY_HOST = "egress-proxy.internal:3128"


def network_error(kind: str, host: str) -> Exception:
    if kind == "timeout":
        return requests.ReadTimeout(f"HTTPSConnectionPool(host='{host}', port=443): Read timed out. (read timeout=30)")
    return requests.ConnectionError(
        f"HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded with url: / (Caused by ProxyError("
        f"'Unable to connect to proxy', NewConnectionError('Failed to establish a new connection to {PROXY_HOST}')))"
    )


UNREACHABLE = {
    "mercadopago": "Não foi possível falar com o Mercado Pago agora. Tente novamente em alguns minutos.",
    "stripe": "Não foi possível falar com o Stripe agora. Tente novamente em alguns minutos.",
    "paypal": "Não foi possível falar com o PayPal agora. Tente novamente em alguns minutos.",
}
TRY_AGAIN = "Tentar novamente"


def only_payment(tenant) -> Payment:
    with scopes_disabled():
        return Payment.objects.get(tenant=tenant)


def assert_plain(page: str) -> None:
    """No technical detail reaches the buyer."""
    for leak in (PROXY_HOST, "HTTPSConnectionPool", "api.mercadopago.com", "api.stripe.com", "paypal.com",
                 "gateway reported", "Traceback"):
        assert leak not in page, leak


# --- 1. network errors --------------------------------------------------------------------------


CHECKOUTS = [
    # gateway, method, the provider call that fails
    ("mercadopago", "pix", responses.POST, f"{MP_API}/v1/payments", "api.mercadopago.com"),
    ("mercadopago", "", responses.POST, f"{MP_API}/checkout/preferences", "api.mercadopago.com"),
    ("stripe", "", responses.POST, f"{STRIPE_API}/v1/checkout/sessions", "api.stripe.com"),
    ("paypal", "", responses.POST, f"{PAYPAL_API}/v2/checkout/orders", "api-m.sandbox.paypal.com"),
]


@pytest.mark.parametrize("kind", ["connection", "timeout"])
@pytest.mark.parametrize(("gateway", "method", "verb", "url", "host"), CHECKOUTS)
def test_unreachable_provider_at_checkout_fails_the_payment_plainly(
    gateway_settings, owner_client, provider, kind, gateway, method, verb, url, host
):
    if gateway == "paypal":
        paypal_token(provider)
    provider.add(verb, url, body=network_error(kind, host))
    response = owner_client.post(reverse("billing_checkout"),
                                 {"credits": "1000", "gateway": gateway, "method": method})
    payment = only_payment(owner_client.tenant)
    assert response.status_code == 302 and response.url == reverse("billing_payment", args=[payment.reference])
    # Failed, not left pending; the technical detail kept for operators.
    assert (payment.status, payment.failure_code) == ("failed", "unavailable")
    assert "Read timed out" in payment.failure_reason or PROXY_HOST in payment.failure_reason
    page = owner_client.get(response.url).content.decode()
    assert UNREACHABLE[gateway] in page and TRY_AGAIN in page
    assert_plain(page)
    # "Tentar novamente" posts the same purchase again: a new checkout, which now works.
    assert f'name="gateway" value="{gateway}"' in page and 'name="credits" value="1000"' in page


def test_try_again_after_an_unreachable_provider_starts_a_new_checkout(gateway_settings, owner_client, provider):
    provider.add(responses.POST, f"{MP_API}/v1/payments", body=network_error("connection", "api.mercadopago.com"))
    owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "mercadopago", "method": "pix"})
    failed = only_payment(owner_client.tenant)
    page = owner_client.get(reverse("billing_payment", args=[failed.reference])).content.decode()
    assert 'name="plan" value="BUSINESS"' in page and 'name="method" value="pix"' in page
    provider.replace(responses.POST, f"{MP_API}/v1/payments", status=201,
                     json=mp_payment("1234567001", reference="x", status="pending", amount=197.0))
    again = owner_client.post(reverse("billing_checkout"),
                              {"plan": "BUSINESS", "gateway": "mercadopago", "method": "pix"})
    with scopes_disabled():
        retry = Payment.objects.exclude(pk=failed.pk).get(tenant=owner_client.tenant)
    assert again.url == reverse("billing_payment", args=[retry.reference])
    assert (retry.status, retry.external_id, retry.failure_code) == ("pending", "1234567001", "")


RETURNS = [
    ("mercadopago", "601", "?payment_id=601&status=approved", responses.GET, f"{MP_API}/v1/payments/601"),
    ("stripe", "cs_test_return", "", responses.GET, f"{STRIPE_API}/v1/checkout/sessions/cs_test_return"),
    ("paypal", "5O190127TN364715T", "?token=5O190127TN364715T&PayerID=X", responses.GET,
     f"{PAYPAL_API}/v2/checkout/orders/5O190127TN364715T"),
]


@pytest.mark.parametrize(("gateway", "external_id", "query", "verb", "url"), RETURNS)
def test_unreachable_provider_on_the_buyers_return_shows_a_plain_page(
    gateway_settings, owner_client, provider, gateway, external_id, query, verb, url
):
    # As start_checkout leaves them: a PIX payment knows its Mercado Pago payment id from the start.
    extra = {"external_payment_id": external_id, "method": "pix"} if gateway == "mercadopago" else {}
    payment = pending_payment(owner_client.tenant, gateway=gateway, external_id=external_id, **extra)
    if gateway == "paypal":
        paypal_token(provider)
    provider.add(verb, url, body=network_error("connection", url.split("/")[2]))
    response = owner_client.get(reverse("billing_return", args=[payment.reference]) + query, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert UNREACHABLE[gateway] in page
    assert_plain(page)
    # The buyer may well have paid: the payment stays pending, to be confirmed later.
    payment.refresh_from_db()
    assert payment.status == "pending" and limits.credit_balance(owner_client.tenant) == 0
    # "I have paid: check now" goes the same way (PayPal is checked on the return only, with its token).
    check = owner_client.post(reverse("billing_payment_check", args=[payment.reference]), follow=True)
    assert check.status_code == 200
    assert_plain(check.content.decode())
    if gateway != "paypal":
        assert UNREACHABLE[gateway] in check.content.decode()


def test_unreachable_mercadopago_on_a_signed_webhook_asks_for_a_retry(gateway_settings, client, make_owner,
                                                                      provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000700")
    url = f"{MP_API}/v1/payments/555000700"
    provider.add(responses.GET, url, body=network_error("connection", "api.mercadopago.com"))
    response = post_mp(client, "555000700")
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert PROXY_HOST not in response.content.decode()
    assert not GatewayEvent.objects.exists()
    payment.refresh_from_db()
    assert payment.status == "pending"
    # Mercado Pago retries once the API answers again: applied then.
    provider.replace(responses.GET, url, json=mp_payment("555000700", reference=str(payment.reference)))
    assert post_mp(client, "555000700").json()["result"] == "applied"
    assert limits.credit_balance(tenant) == 1000


@pytest.mark.parametrize("failing", ["verify", "order"])
def test_unreachable_paypal_on_a_webhook_asks_for_a_retry(gateway_settings, client, make_owner, provider, failing):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="paypal", external_id="8AA831015G517922P")
    paypal_token(provider)
    if failing == "verify":
        provider.add(responses.POST, f"{PAYPAL_API}/v1/notifications/verify-webhook-signature",
                     body=network_error("timeout", "api-m.sandbox.paypal.com"))
    else:
        paypal_verification(provider)
        provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/8AA831015G517922P",
                     body=network_error("connection", "api-m.sandbox.paypal.com"))
    response = post_paypal(client, paypal_capture_event("8AA831015G517922P", reference=str(payment.reference)))
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert not GatewayEvent.objects.exists() and limits.credit_balance(tenant) == 0


def test_provider_server_errors_are_treated_as_unavailable(gateway_settings, owner_client, provider):
    """A 502 from Mercado Pago is not the buyer's fault either: same plain message."""
    provider.add(responses.POST, f"{MP_API}/checkout/preferences", status=502,
                 json={"message": "upstream connect error", "error": "bad_gateway", "status": 502})
    owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "mercadopago"})
    payment = only_payment(owner_client.tenant)
    assert (payment.status, payment.failure_code) == ("failed", "unavailable")


# --- 2. replay keys only from signed data ---------------------------------------------------------


def test_mercadopago_replay_with_other_unsigned_ids_creates_no_rows(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000800")
    provider.add(responses.GET, f"{MP_API}/v1/payments/555000800",
                 json=mp_payment("555000800", reference=str(payment.reference)))
    request_id = "0d5e6a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
    signature = mp_signature("555000800", request_id)  # one valid signature, reused within the window
    for notification_id in range(1, 6):
        body = mp_notification("555000800", notification_id=notification_id)
        response = post_mp(client, "555000800", request_id=request_id, signature=signature, body=body)
        assert response.status_code == 200
    event = GatewayEvent.objects.get(gateway="mercadopago")
    assert event.deliveries == 5 and event.result == "applied"
    assert limits.credit_balance(tenant) == 1000


def test_mercadopago_body_naming_another_payment_than_the_signed_one_is_refused(
    gateway_settings, client, make_owner, provider
):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="mercadopago", external_id="555000801")
    fetch = provider.add(responses.GET, f"{MP_API}/v1/payments/555000801",
                         json=mp_payment("555000801", reference=str(payment.reference)))
    request_id = "1d5e6a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
    signature = mp_signature("555000801", request_id)
    for n in range(5):
        body = mp_notification(f"99900{n}", notification_id=700 + n)
        response = post_mp(client, "555000801", request_id=request_id, signature=signature, body=body)
        assert 400 <= response.status_code < 500
    assert not GatewayEvent.objects.exists() and fetch.call_count == 0


def test_stripe_replay_with_another_event_id_is_refused(gateway_settings, client, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_replay_ids")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_replay_ids",
                                                                       reference=str(payment.reference)),
                           event_id="evt_signed")
    signature = stripe_signature(payload)
    for n in range(5):
        assert post_stripe(client, payload.replace("evt_signed", f"evt_other{n}"), signature).status_code == 400
    assert not GatewayEvent.objects.exists()
    assert post_stripe(client, payload, signature).status_code == 200
    assert GatewayEvent.objects.get().event_id == "evt_signed"


def test_paypal_replay_with_another_event_id_is_refused(gateway_settings, client, make_owner, provider):
    """PayPal verifies the whole event we send it (id included): a changed id fails verification."""
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="paypal", external_id="8AA831015G517922Q")
    original = paypal_capture_event("8AA831015G517922Q", reference=str(payment.reference))
    paypal_token(provider)

    def verify(request):
        sent = json.loads(request.body)["webhook_event"]
        status = "SUCCESS" if sent == original else "FAILURE"
        return 200, {}, json.dumps({"verification_status": status})

    provider.add_callback(responses.POST, f"{PAYPAL_API}/v1/notifications/verify-webhook-signature", callback=verify)
    provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/8AA831015G517922Q",
                 json=paypal_order("8AA831015G517922Q", reference=str(payment.reference)))
    for n in range(5):
        assert post_paypal(client, dict(original, id=f"WH-OTHER-{n}")).status_code == 400
    assert not GatewayEvent.objects.exists()
    assert post_paypal(client, original).json()["result"] == "applied"


# --- 3. bodies of the wrong JSON type; Stripe timestamps on both sides -----------------------------


@pytest.mark.parametrize("body", ["[]", '[{"id": "evt_1", "type": "checkout.session.completed"}]', '"evt"', "42",
                                  "null", "true"])
def test_signed_non_object_bodies_are_refused_by_every_gateway(gateway_settings, client, provider, body):
    assert post_stripe(client, body).status_code == 400
    verify = paypal_verification(provider)
    response = client.post("/api/v1/webhooks/billing/paypal", data=body, content_type="application/json",
                           **paypal_headers())
    assert response.status_code == 400 and verify.call_count == 0
    request_id = "2d5e6a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
    response = client.post("/api/v1/webhooks/billing/mercadopago?data.id=555&type=payment", data=body,
                           content_type="application/json", HTTP_X_SIGNATURE=mp_signature("555", request_id),
                           HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 400
    assert not GatewayEvent.objects.exists()


def test_stripe_signed_object_with_non_object_parts_is_refused(gateway_settings, client):
    payload = json.dumps({"id": "evt_odd", "object": "event", "type": "checkout.session.completed", "data": [1, 2]})
    assert post_stripe(client, payload).status_code == 400
    assert not GatewayEvent.objects.exists()


@pytest.mark.parametrize("offset", [3600, 301, -301, -3600])
def test_stripe_timestamps_outside_the_tolerance_are_refused_on_both_sides(gateway_settings, client, make_owner,
                                                                           offset):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_future")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_future",
                                                                       reference=str(payment.reference)))
    signature = stripe_signature(payload, timestamp=int(time.time()) + offset)
    assert post_stripe(client, payload, signature).status_code == 400
    assert not GatewayEvent.objects.exists() and limits.credit_balance(tenant) == 0


def test_stripe_timestamps_slightly_ahead_are_accepted(gateway_settings, client, make_owner):
    """Clocks differ a little: within the tolerance is fine, ahead or behind."""
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_skew")
    payload = stripe_event("checkout.session.completed", stripe_session("cs_test_skew",
                                                                       reference=str(payment.reference)))
    assert post_stripe(client, payload, stripe_signature(payload, timestamp=int(time.time()) + 60)).status_code == 200
    assert limits.credit_balance(tenant) == 1000


# --- 4. what the buyer reads when a payment fails ---------------------------------------------------


def test_declined_payment_is_explained_in_portuguese_with_try_again(settings, owner_client):
    settings.BILLING_SANDBOX_ENABLED = True
    owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox"})
    payment = only_payment(owner_client.tenant)
    owner_client.post(reverse("billing_sandbox_checkout", args=[payment.reference]), {"decision": "decline"})
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("failed", "declined")
    page = owner_client.get(reverse("billing_payment", args=[payment.reference])).content.decode()
    assert "O pagamento foi recusado." in page and TRY_AGAIN in page
    assert_plain(page)


def test_provider_refusal_shows_a_plain_message_and_keeps_the_detail(gateway_settings, owner_client, provider,
                                                                      client, operator):
    provider.add(responses.POST, f"{STRIPE_API}/v1/checkout/sessions", status=400, json={"error": {
        "type": "invalid_request_error", "message": "Invalid currency: xyz", "param": "currency"}})
    response = owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "stripe"}, follow=True)
    page = response.content.decode()
    payment = only_payment(owner_client.tenant)
    assert (payment.status, payment.failure_code) == ("failed", "refused")
    assert "Invalid currency" in payment.failure_reason and "Invalid currency" not in page
    assert "O Stripe não aceitou a solicitação." in page and TRY_AGAIN in page
    # Operators see the technical detail in the console.
    client.force_login(operator)
    admin_page = client.get(reverse("admin:billing_payment_change", args=[payment.pk])).content.decode()
    assert "Invalid currency: xyz" in admin_page


def test_members_see_the_message_but_no_try_again_button(settings, client, make_owner, make_member):
    from whago.models import Role

    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="sandbox", external_id="sbx_member", status="failed",
                              failure_code="declined", failure_reason="gateway reported failed")
    client.force_login(make_member(tenant, Role.MEMBER))
    page = client.get(reverse("billing_payment", args=[payment.reference])).content.decode()
    assert "O pagamento foi recusado." in page and TRY_AGAIN not in page
    assert_plain(page)
