"""Issue 18 (payments): receipts with the company's CNPJ and address (edited in Settings, the CNPJ's check
digits verified) and WHAGO's issuer data; descriptions with thousands separators ("1.000 créditos")."""
import json
from urllib.parse import parse_qs

import pytest
import responses
from django.urls import reverse
from django.utils import timezone, translation
from django_scopes import scopes_disabled

from billing.models import Payment
from whago.models import Role, Tenant

from .conftest import MP_API, STRIPE_API, mp_payment, pending_payment

pytestmark = pytest.mark.django_db

COMPANY = {
    "name": "Padaria Pão Quente", "cnpj": "11222333000181", "address_street": "Rua Augusta, 1500, sala 4",
    "address_district": "Consolação", "address_city": "São Paulo", "address_state": "SP",
    "address_postal_code": "01304001",
}


def tenant_row(tenant) -> Tenant:
    return Tenant.objects.get(pk=tenant.pk)


def test_settings_keep_the_cnpj_and_address_formatted(owner_client):
    response = owner_client.post(reverse("settings"), COMPANY)
    assert response.status_code == 302
    tenant = tenant_row(owner_client.tenant)
    assert (tenant.name, tenant.cnpj, tenant.address_postal_code) == (
        "Padaria Pão Quente", "11.222.333/0001-81", "01304-001")
    assert (tenant.address_street, tenant.address_district, tenant.address_city, tenant.address_state) == (
        "Rua Augusta, 1500, sala 4", "Consolação", "São Paulo", "SP")
    page = owner_client.get(reverse("settings")).content.decode()
    assert 'value="11.222.333/0001-81"' in page and 'value="01304-001"' in page
    assert '<option value="SP" selected>São Paulo</option>' in page


def test_the_alphanumeric_cnpj_of_july_2026_is_accepted(owner_client):
    assert owner_client.post(reverse("settings"), {**COMPANY, "cnpj": "12.abc.345/01de-35"}).status_code == 302
    assert tenant_row(owner_client.tenant).cnpj == "12.ABC.345/01DE-35"


@pytest.mark.parametrize("cnpj", ["11.222.333/0001-82", "11222333000", "11.222.333/0001-81x", "abcdefghijklmn"])
def test_a_wrong_cnpj_is_refused_next_to_its_field_and_nothing_is_lost(owner_client, cnpj):
    response = owner_client.post(reverse("settings"), {**COMPANY, "cnpj": cnpj})
    assert response.status_code == 400
    page = response.content.decode()
    form = response.context["form"]
    assert list(form.errors) == ["cnpj"]
    assert "CNPJ inválido" in page
    assert 'value="Rua Augusta, 1500, sala 4"' in page  # what was typed is still there
    tenant = tenant_row(owner_client.tenant)
    assert tenant.cnpj == "" and tenant.address_street == ""  # nothing half-saved


def test_a_wrong_cep_is_refused(owner_client):
    response = owner_client.post(reverse("settings"), {**COMPANY, "address_postal_code": "0130400"})
    assert response.status_code == 400 and list(response.context["form"].errors) == ["address_postal_code"]
    assert "CEP inválido" in response.content.decode()


def test_members_cannot_change_the_company_data(client, make_owner, make_member):
    _, tenant = make_owner()
    client.force_login(make_member(tenant, Role.MEMBER))
    client.post(reverse("settings"), COMPANY)
    assert tenant_row(tenant).cnpj == ""


def paid(tenant, **fields) -> Payment:
    payment = pending_payment(tenant, gateway="mercadopago", external_id="1500100200", method="pix",
                              external_payment_id="1500100200", **fields)
    with scopes_disabled():
        Payment.objects.filter(pk=payment.pk).update(status="paid", paid_at=timezone.now())
    return payment


def test_the_receipt_shows_the_issuer_and_the_companys_cnpj_and_address(settings, owner_client):
    settings.BILLING_ISSUER_NAME = "WHAGO Tecnologia Ltda."
    settings.BILLING_ISSUER_CNPJ = "45.723.174/0001-10"
    settings.BILLING_ISSUER_ADDRESS = "Av. Paulista, 1000 — São Paulo / SP — 01310-100"
    owner_client.post(reverse("settings"), COMPANY)
    payment = paid(owner_client.tenant, credits=5000, amount="199.90")
    page = owner_client.get(reverse("billing_receipt", args=[payment.reference])).content.decode()
    issuer = page[page.index('id="issuer"'):page.index('id="customer"')]
    assert "WHAGO Tecnologia Ltda." in issuer and "CNPJ 45.723.174/0001-10" in issuer
    assert "Av. Paulista, 1000 — São Paulo / SP — 01310-100" in issuer
    customer = page[page.index('id="customer"'):page.index("</table>")]
    assert "Padaria Pão Quente" in customer and "<span data-cnpj>11.222.333/0001-81</span>" in customer
    assert "Rua Augusta, 1500, sala 4<br>Consolação<br>São Paulo / SP — 01304-001" in customer
    assert "5.000 créditos de mensagens" in page and "R$ 199,90" in page
    assert "Configurações" not in page  # nothing to complete


def test_a_receipt_without_cnpj_says_where_to_add_it(owner_client):
    payment = paid(owner_client.tenant)
    page = owner_client.get(reverse("billing_receipt", args=[payment.reference])).content.decode()
    assert "data-cnpj" not in page
    assert f'href="{reverse("settings")}"' in page and "CNPJ" in page


def test_another_companys_receipt_is_404(client, make_owner):
    _, tenant_a = make_owner()
    user_b, _ = make_owner()
    payment = paid(tenant_a)
    client.force_login(user_b)
    assert client.get(reverse("billing_receipt", args=[payment.reference])).status_code == 404


# --- descriptions: "1.000 créditos" -------------------------------------------------------------------


def test_credit_descriptions_have_thousands_separators_in_each_language(make_owner):
    _, tenant = make_owner()
    payment = pending_payment(tenant, gateway="sandbox", external_id="sbx_desc", credits=20000, amount="599.90")
    with translation.override("pt-br"):
        assert payment.description == "20.000 créditos de mensagens"
    with translation.override("en"):
        assert payment.description == "20,000 message credits"
    small = pending_payment(tenant, gateway="sandbox", external_id="sbx_small", credits=500)
    with translation.override("pt-br"):
        assert small.description == "500 créditos de mensagens"


def test_descriptions_sent_to_the_gateways_are_formatted(gateway_settings, owner_client, provider):
    pix = provider.add(responses.POST, f"{MP_API}/v1/payments", status=201,
                       json=mp_payment("1600100200", reference="x", status="pending"))
    owner_client.post(reverse("billing_checkout"), {"credits": "1000", "gateway": "mercadopago", "method": "pix"})
    assert json.loads(pix.calls[0].request.body)["description"] == "1.000 créditos de mensagens"
    stripe = provider.add(responses.POST, f"{STRIPE_API}/v1/checkout/sessions", json={
        "id": "cs_test_desc", "object": "checkout.session", "mode": "payment",
        "url": "https://checkout.stripe.com/c/pay/cs_test_desc"})
    owner_client.post(reverse("billing_checkout"), {"credits": "5000", "gateway": "stripe"})
    sent = parse_qs(stripe.calls[0].request.body)
    assert sent["line_items[0][price_data][product_data][name]"] == ["5.000 créditos de mensagens"]
    # The billing page lists them the same way.
    page = owner_client.get(reverse("billing")).content.decode()
    assert "1.000 créditos de mensagens" in page and "1000 créditos" not in page
