"""A suspended company: its members see why and whom to contact, every page but Billing stays closed,
and Billing works, so a company suspended for not paying can pay."""
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from billing.models import Payment
from whago import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def suspended(owner_client, settings):
    settings.SUPPORT_EMAIL = "ajuda@whago.example"
    settings.BILLING_SANDBOX_ENABLED = True
    services.suspend_tenant(owner_client.tenant, reason="Pagamento em atraso")
    return owner_client


def test_the_suspension_page_gives_the_reason_the_contact_and_the_way_to_billing(suspended):
    page = suspended.get(reverse("dashboard"), follow=True)
    assert page.redirect_chain[-1][0] == reverse("no_tenant")
    html = page.content.decode()
    assert "Pagamento em atraso" in html and 'href="mailto:ajuda@whago.example"' in html
    assert f'name="tenant" value="{suspended.tenant.pk}"' in html and "Ir para Cobrança" in html


def test_billing_stays_open_and_a_suspended_company_can_pay(suspended):
    to_billing = suspended.post(reverse("switch_tenant"), {"tenant": suspended.tenant.pk})
    assert to_billing.status_code == 302 and to_billing["Location"] == reverse("billing")
    billing = suspended.get(reverse("billing"))
    assert billing.status_code == 200
    html = billing.content.decode()
    assert 'id="suspended-banner"' in html and f'href="{reverse("chip_list")}"' not in html  # only Billing in the menu

    response = suspended.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "sandbox"})
    assert response.status_code == 302
    with scopes_disabled():
        payment = Payment.objects.get(tenant=suspended.tenant)
    assert suspended.get(reverse("billing_payment", args=[payment.reference])).status_code == 200
    approved = suspended.post(reverse("billing_sandbox_checkout", args=[payment.reference]), {"decision": "approve"})
    assert approved.status_code in (200, 302)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PAID


@pytest.mark.parametrize("name", ["chip_list", "message_list", "campaign_list", "api_keys", "settings"])
def test_every_other_page_stays_closed(suspended, name):
    response = suspended.get(reverse(name))
    assert response.status_code == 302 and response["Location"] == reverse("no_tenant")


def test_members_of_a_suspended_company_and_an_active_one_work_in_the_active_one(suspended, make_owner):
    _owner, other = make_owner(company="Outra")
    from whago.models import Membership

    with scopes_disabled():
        Membership.objects.create(tenant=other, user=suspended.user, role="member")
    assert suspended.get(reverse("billing")).context["current_tenant"] == other
