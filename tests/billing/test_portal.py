"""The Cobrança page, the sandbox gateway end to end, receipts, tenant isolation, admin and settings."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from billing.models import CreditLedger, GatewayEvent, Payment, Subscription
from billing.signals import plan_changed, usage_requested
from whago.models import Role

from .conftest import pending_payment

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def only_payment(tenant) -> Payment:
    with scopes_disabled():
        return Payment.objects.get(tenant=tenant)


def test_full_sandbox_upgrade_raises_the_chip_limit(settings, owner_client, django_capture_on_commit_callbacks):
    settings.BILLING_SANDBOX_ENABLED = True
    tenant = owner_client.tenant
    assert not limits.can_create_chip(tenant, 1)
    page = owner_client.get(reverse("billing")).content.decode()
    assert "data-sandbox" in page and 'data-chip-limit="1"' in page

    response = owner_client.post(reverse("billing_checkout"), {"plan": "BUSINESS", "gateway": "sandbox"})
    payment = only_payment(tenant)
    assert response.url == reverse("billing_sandbox_checkout", args=[payment.reference])
    sandbox_page = owner_client.get(response.url).content.decode()
    assert "No money moves" in sandbox_page or "nenhum dinheiro" in sandbox_page.lower()
    assert not limits.can_create_chip(tenant, 1)

    changes = []
    plan_changed.connect(lambda **kw: changes.append(kw["new_plan"].code), weak=False, dispatch_uid="t-sbx")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            done = owner_client.post(response.url, {"decision": "approve"}, follow=True)
    finally:
        plan_changed.disconnect(dispatch_uid="t-sbx")
    assert done.status_code == 200
    assert limits.can_create_chip(tenant, 1) and limits.chip_limit(tenant) == 3
    assert changes == ["BUSINESS"]
    payment.refresh_from_db()
    assert payment.status == "paid"
    event = GatewayEvent.objects.get(gateway="sandbox")
    assert event.result == "applied" and event.payment_id == payment.pk
    # Approving again (back button, double click) applies nothing more.
    owner_client.post(response.url, {"decision": "approve"})
    assert GatewayEvent.objects.get(gateway="sandbox").deliveries == 2
    assert 'data-chip-limit="3"' in owner_client.get(reverse("billing")).content.decode()
    receipt = owner_client.get(reverse("billing_receipt", args=[payment.reference])).content.decode()
    assert payment.receipt_number in receipt and "197" in receipt


def test_sandbox_credits_with_pix_and_a_declined_payment(settings, owner_client):
    settings.BILLING_SANDBOX_ENABLED = True
    response = owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox",
                                                               "method": "pix"})
    payment = only_payment(owner_client.tenant)
    assert response.url == reverse("billing_payment", args=[payment.reference])
    page = owner_client.get(response.url).content.decode()
    assert "SANDBOX-PIX-WHAGO" in page and "data:image/png;base64," in page
    owner_client.post(reverse("billing_sandbox_checkout", args=[payment.reference]), {"decision": "decline"})
    payment.refresh_from_db()
    assert payment.status == "failed" and limits.credit_balance(owner_client.tenant) == 0


def test_sandbox_is_not_offered_when_disabled(settings, owner_client):
    settings.BILLING_SANDBOX_ENABLED = False
    response = owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox"}, follow=True)
    assert response.status_code == 200
    with scopes_disabled():
        assert not Payment.objects.exists()


def test_members_cannot_pay_or_downgrade(settings, client, make_owner, make_member):
    settings.BILLING_SANDBOX_ENABLED = True
    _, tenant = make_owner()
    member = make_member(tenant, Role.MEMBER)
    client.force_login(member)
    assert client.get(reverse("billing")).status_code == 200
    assert client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox"}).status_code == 403
    assert client.post(reverse("billing_downgrade")).status_code == 403


def test_tenant_b_gets_404_on_tenant_a_payments(settings, client, make_owner):
    settings.BILLING_SANDBOX_ENABLED = True
    _, tenant_a = make_owner()
    owner_b, _ = make_owner()
    paid = pending_payment(tenant_a, gateway="sandbox", external_id="sbx_a")
    with scopes_disabled():
        Payment.objects.filter(pk=paid.pk).update(status="paid")
    client.force_login(owner_b)
    for name in ("billing_payment", "billing_receipt", "billing_return", "billing_sandbox_checkout"):
        assert client.get(reverse(name, args=[paid.reference])).status_code == 404, name
    assert client.post(reverse("billing_sandbox_checkout", args=[paid.reference]),
                       {"decision": "approve"}).status_code == 404
    assert client.post(reverse("billing_payment_check", args=[paid.reference])).status_code == 404
    assert str(paid.reference) not in client.get(reverse("billing")).content.decode()


def test_downgrade_to_free_warns_and_announces(settings, owner_client, django_capture_on_commit_callbacks):
    tenant = owner_client.tenant
    with scopes_disabled():
        Subscription.objects.filter(tenant=tenant).update(plan=limits.Plan.objects.get(code="ENTERPRISE"))

    def chips_in_use(sender, tenant, **kwargs):
        return {"chips": 7}

    usage_requested.connect(chips_in_use, dispatch_uid="t-usage")
    changes = []
    plan_changed.connect(lambda **kw: changes.append((kw["old_plan"].code, kw["new_plan"].code)), weak=False,
                         dispatch_uid="t-down")
    try:
        page = owner_client.get(reverse("billing")).content.decode()
        assert "7 / 10" in page
        with django_capture_on_commit_callbacks(execute=True):
            response = owner_client.post(reverse("billing_downgrade"), follow=True)
    finally:
        usage_requested.disconnect(dispatch_uid="t-usage")
        plan_changed.disconnect(dispatch_uid="t-down")
    body = response.content.decode()
    assert changes == [("ENTERPRISE", "FREE")]
    assert limits.chip_limit(tenant) == 1
    assert "6" in body and ("stopped (not deleted)" in body or "paralisados (não excluídos)" in body)


def test_pricing_page_lists_the_plans(client):
    page = client.get(reverse("pricing")).content.decode()
    for code in ("FREE", "BUSINESS", "ENTERPRISE"):
        assert f'data-plan="{code}"' in page


def test_billing_page_meters(owner_client):
    limits.reserve_messages(owner_client.tenant, 7)
    with scopes_disabled():
        CreditLedger.objects.create(tenant=owner_client.tenant, amount=250, reason="adjustment")
    page = owner_client.get(reverse("billing"))
    assert page.context["quota"]["day_used"] == 7
    assert 'data-credits="250"' in page.content.decode()


def test_admin_shows_events_payloads_and_gateways(client, operator, gateway_settings, make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="stripe", external_id="cs_admin")
    GatewayEvent.objects.create(gateway="stripe", event_id="evt_admin", event_type="checkout.session.completed",
                                payload={"id": "evt_admin", "marker": "payload-shown"}, result="applied",
                                payment=payment)
    client.force_login(operator)
    event = GatewayEvent.objects.get(event_id="evt_admin")
    detail = client.get(reverse("admin:billing_gatewayevent_change", args=[event.pk])).content.decode()
    assert "payload-shown" in detail
    plans = client.get(reverse("admin:billing_plan_changelist")).content.decode()
    assert "Stripe" in plans and "PayPal" in plans
    for name in ("subscription", "payment", "creditledger", "gatewayevent"):
        assert client.get(reverse(f"admin:billing_{name}_changelist")).status_code == 200, name


def test_production_refuses_the_sandbox_gateway():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ENV", "SECRET_KEY")}
    env.update({
        "DJANGO_ENV": "production",
        "SECRET_KEY": "a" * 20 + "Production-Secret-Key-With-Enough-Entropy-0123456789",
        "ALLOWED_HOSTS": "whago.example.com",
        "FIELD_ENCRYPTION_KEYS": "zq9dYAl0fDSWi-nZ8QfpY2LGdhmG-7f1dC4s3lJEL3c=",
        "DATABASE_URL": "postgres://whago:whago@127.0.0.1:5432/whago",
        "BILLING_SANDBOX_ENABLED": "true",
    })
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "BILLING_SANDBOX_ENABLED" in result.stderr
