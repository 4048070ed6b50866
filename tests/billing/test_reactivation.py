"""Issue 18 (payments): a company suspended for non-payment is reactivated when a payment of it is
confirmed by a gateway's signed webhook — once, whatever the number of deliveries, with an audit entry;
a company suspended by an operator for another reason stays suspended, and a sandbox test payment
lifts nothing.

Gateways are faked at the HTTP boundary (`responses`) with their real signature schemes.
"""
import pytest
import responses
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import Payment
from whago import services as accounts
from whago.models import AuditLog, SuspensionKind, Tenant

from .conftest import (
    MP_API,
    PAYPAL_API,
    mp_payment,
    mp_signature,
    paypal_capture_event,
    paypal_order,
    paypal_token,
    paypal_verification,
    pending_payment,
    post_mp,
    post_paypal,
    post_stripe,
    stripe_event,
    stripe_session,
)

pytestmark = pytest.mark.django_db


def pay_with_mercadopago(client, provider, tenant):
    """A PIX credit payment; returns a function that delivers its signed webhook (again)."""
    payment = pending_payment(tenant, gateway="mercadopago", external_id="1400223344", method="pix")
    provider.add(responses.GET, f"{MP_API}/v1/payments/1400223344",
                 json=mp_payment("1400223344", reference=str(payment.reference)))
    signature = mp_signature("1400223344", "d3c1f0aa-5b7e-4c61-9d2e-0a1b2c3d4e5f")
    return payment, lambda: post_mp(client, "1400223344", request_id="d3c1f0aa-5b7e-4c61-9d2e-0a1b2c3d4e5f",
                                    signature=signature)


def pay_with_stripe(client, provider, tenant):
    """A plan bought through Stripe Checkout; checkout.session.completed, signed."""
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_test_react1", kind="plan", amount="197.00",
                              plan_code="BUSINESS")
    payload = stripe_event("checkout.session.completed", stripe_session(
        "cs_test_react1", mode="subscription", amount_total=19700, reference=str(payment.reference),
        subscription="sub_1QreactTest"), event_id="evt_1QreactTest0001")
    return payment, lambda: post_stripe(client, payload)


def pay_with_paypal(client, provider, tenant):
    """Credits paid with PayPal; PAYMENT.CAPTURE.COMPLETED verified by PayPal's API, order fetched."""
    payment = pending_payment(tenant, gateway="paypal", external_id="5O190127TN364715T")
    paypal_token(provider)
    paypal_verification(provider, "SUCCESS")
    provider.add(responses.GET, f"{PAYPAL_API}/v2/checkout/orders/5O190127TN364715T",
                 json=paypal_order("5O190127TN364715T", reference=str(payment.reference)))
    event = paypal_capture_event("5O190127TN364715T", reference=str(payment.reference))
    return payment, lambda: post_paypal(client, event)


GATEWAYS = {"mercadopago": pay_with_mercadopago, "stripe": pay_with_stripe, "paypal": pay_with_paypal}


def reactivations(tenant) -> list[AuditLog]:
    with scopes_disabled():
        return list(AuditLog.objects.filter(action="tenant.reactivate", tenant=tenant))


def state(tenant) -> tuple:
    tenant = Tenant.objects.get(pk=tenant.pk)
    return tenant.is_active, tenant.suspension_kind


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_confirmed_payment_reactivates_a_company_suspended_for_non_payment_once(
        gateway, gateway_settings, client, make_owner, provider, django_capture_on_commit_callbacks):
    user, tenant = make_owner()
    assert accounts.suspend_tenant(tenant, reason="Fatura de maio em aberto", kind=SuspensionKind.NONPAYMENT)
    assert state(tenant) == (False, "nonpayment")
    payment, deliver = GATEWAYS[gateway](client, provider, tenant)

    with django_capture_on_commit_callbacks(execute=True):
        response = deliver()
    assert response.status_code == 200 and response.json()["result"] == "applied"
    payment.refresh_from_db()
    assert payment.status == "paid"
    assert state(tenant) == (True, "")
    [entry] = reactivations(tenant)
    assert entry.actor is None and entry.status == "succeeded"
    assert entry.result == f"payment {payment.reference} confirmed by {payment.get_gateway_display()}"
    # The members use the portal again.
    client.force_login(user)
    assert client.get(reverse("dashboard")).status_code == 200

    # The gateway delivers the same webhook again: nothing changes a second time.
    assert deliver().status_code == 200
    assert len(reactivations(tenant)) == 1 and state(tenant) == (True, "")


@pytest.mark.parametrize("gateway", ["mercadopago", "stripe"])
def test_paying_does_not_lift_a_suspension_for_another_reason(gateway, gateway_settings, client, make_owner,
                                                              provider):
    _, tenant = make_owner()
    accounts.suspend_tenant(tenant, reason="Envio de spam denunciado", kind=SuspensionKind.OTHER)
    payment, deliver = GATEWAYS[gateway](client, provider, tenant)
    assert deliver().json()["result"] == "applied"
    payment.refresh_from_db()
    assert payment.status == "paid"  # the money is taken into account...
    assert state(tenant) == (False, "other")  # ...but only an operator lifts this suspension
    assert reactivations(tenant) == []
    with scopes_disabled():
        assert Tenant.objects.get(pk=tenant.pk).suspension_reason == "Envio de spam denunciado"


def test_a_suspension_from_before_kinds_existed_is_not_lifted_by_paying(gateway_settings, client, make_owner,
                                                                         provider):
    _, tenant = make_owner()
    accounts.suspend_tenant(tenant, reason="antiga")
    Tenant.objects.filter(pk=tenant.pk).update(suspension_kind="")
    _payment, deliver = pay_with_mercadopago(client, provider, tenant)
    assert deliver().json()["result"] == "applied"
    assert state(tenant) == (False, "")


def test_a_sandbox_test_payment_does_not_reactivate(settings, owner_client):
    settings.BILLING_SANDBOX_ENABLED = True
    tenant = owner_client.tenant
    accounts.suspend_tenant(tenant, reason="Fatura vencida", kind=SuspensionKind.NONPAYMENT)
    # Billing stays open to a company suspended for non-payment.
    owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox"})
    with scopes_disabled():
        payment = Payment.objects.get(tenant=tenant)
    owner_client.post(reverse("billing_sandbox_checkout", args=[payment.reference]), {"decision": "approve"})
    payment.refresh_from_db()
    assert payment.status == "paid" and limits.credit_balance(tenant) == 1000
    assert state(tenant) == (False, "nonpayment") and reactivations(tenant) == []


def test_a_declined_payment_does_not_reactivate(gateway_settings, client, make_owner, provider):
    _, tenant = make_owner()
    accounts.suspend_tenant(tenant, reason="Fatura vencida", kind=SuspensionKind.NONPAYMENT)
    payment = pending_payment(tenant, gateway="mercadopago", external_id="1400999888", method="pix")
    provider.add(responses.GET, f"{MP_API}/v1/payments/1400999888",
                 json=mp_payment("1400999888", reference=str(payment.reference), status="rejected"))
    assert post_mp(client, "1400999888").json()["result"] == "applied"
    payment.refresh_from_db()
    assert payment.status == "failed" and state(tenant) == (False, "nonpayment")


def test_the_console_suspends_for_non_payment(client, operator, make_owner):
    _, tenant = make_owner()
    client.force_login(operator)
    url = reverse("admin:whago_tenant_suspend", args=[tenant.pk])
    form = client.get(url).content.decode()
    assert 'value="nonpayment"' in form and 'value="other"' in form
    client.post(url, {"reason": "Fatura vencida", "kind": "nonpayment"})
    assert state(tenant) == (False, "nonpayment")
    with scopes_disabled():
        entry = AuditLog.objects.get(action="tenant.suspend", tenant=tenant)
    assert entry.detail == {"kind": "nonpayment"}
    # Without a kind (an older form), the suspension is for another reason.
    _, other = make_owner()
    client.post(reverse("admin:whago_tenant_suspend", args=[other.pk]), {"reason": "Spam"})
    assert state(other) == (False, "other")


def test_a_company_suspended_for_non_payment_is_told_that_paying_reactivates_it(client, make_owner, settings):
    settings.SUPPORT_EMAIL = "ajuda@whago.example"
    owner, tenant = make_owner(company="Padaria Central")
    _, raw = accounts.create_api_key(tenant=tenant, name="ERP", created_by=owner)
    accounts.suspend_tenant(tenant, reason="Fatura de maio em aberto", kind=SuspensionKind.NONPAYMENT)
    client.force_login(owner)
    page = client.get(reverse("no_tenant")).content.decode()
    assert ("suspensa por falta de pagamento: pague na página de Cobrança e a conta é reativada assim que o "
            "pagamento for confirmado.") in page
    error = client.get(reverse("api_me"), HTTP_AUTHORIZATION=f"Bearer {raw}").json()["error"]
    assert error["code"] == "tenant_suspended" and "Fatura de maio em aberto" in error["message"]
    assert "a conta é reativada assim que o pagamento for confirmado" in error["message"]
    assert "ajuda@whago.example" in error["message"]
    # Suspended for another reason: the contact, and no promise.
    accounts.reactivate_tenant(tenant)
    accounts.suspend_tenant(tenant, reason="Spam", kind=SuspensionKind.OTHER)
    assert "reativada assim que" not in client.get(reverse("no_tenant")).content.decode()
    error = client.get(reverse("api_me"), HTTP_AUTHORIZATION=f"Bearer {raw}").json()["error"]
    assert "reativada assim que" not in error["message"] and "ajuda@whago.example" in error["message"]
