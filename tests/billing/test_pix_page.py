"""Issue 18 (payments): the PIX page — copy-and-paste code with a "Copiar" button, the QR image, and the
confirmation shown by itself: the page polls billing_payment_status (htmx), which answers 204 while the
payment is pending and the new state once Mercado Pago's signed webhook marked it paid.

Mercado Pago is faked at the HTTP boundary (`responses`); its webhook carries the real x-signature.
"""
import base64
import io
import json
import re

import pytest
import responses
from django.urls import reverse
from django_scopes import scopes_disabled
from PIL import Image
from playwright.sync_api import expect
from pyzbar.pyzbar import decode

from billing.gateways.base import qr_png_base64
from billing.models import Payment
from tests.chips.browserkit import LAPTOP, PHONE, browser, session_cookie  # noqa: F401

from .conftest import MP_API, PIX_PNG, mp_payment, pending_payment, post_mp

PIX_CODE = "00020126360014BR.GOV.BCB.PIX0114+5511999998888520400005303986540549.905802BR"


def pix_payment(tenant, payment_id: str = "1325001122", image: str = PIX_PNG) -> Payment:
    """A PIX charge as start_checkout leaves it: pending, with Mercado Pago's code and QR image."""
    return pending_payment(tenant, gateway="mercadopago", external_id=payment_id, external_payment_id=payment_id,
                           method="pix", pix_qr_code=PIX_CODE, pix_qr_code_base64=image)


def status_of(client, payment: Payment, shown: str | None = "pending"):
    url = reverse("billing_payment_status", args=[payment.reference])
    return client.get(url, {"shown": shown} if shown else {}, HTTP_HX_REQUEST="true")


def mp_answers(provider, payment: Payment, status: str) -> None:
    provider.upsert(responses.GET, f"{MP_API}/v1/payments/{payment.external_id}",
                     json=mp_payment(payment.external_id, reference=str(payment.reference), status=status))


@pytest.mark.django_db
def test_the_pix_page_has_the_code_a_copy_button_the_qr_and_polls_its_status(gateway_settings, owner_client):
    payment = pix_payment(owner_client.tenant)
    page = owner_client.get(reverse("billing_payment", args=[payment.reference])).content.decode()
    assert f'<textarea id="pix-code" readonly rows="4" cols="60">{PIX_CODE}</textarea>' in page
    assert f'src="data:image/png;base64,{PIX_PNG}"' in page
    assert re.search(r'<button type="button" class="primary" data-copy="pix-code"[^>]*>Copiar</button>', page)
    assert 'data-copied="Copiado!"' in page
    assert '<script src="/static/js/billing.js" defer></script>' in page  # a static file: the CSP allows no inline
    status_url = reverse("billing_payment_status", args=[payment.reference])
    assert f'hx-get="{status_url}?shown=pending" hx-trigger="every 3s" hx-swap="outerHTML"' in page


@pytest.mark.django_db
def test_a_pix_charge_without_an_image_gets_one_drawn_from_its_code(gateway_settings, owner_client, provider):
    answer = mp_payment("1325009999", reference="set-below", status="pending")
    del answer["point_of_interaction"]["transaction_data"]["qr_code_base64"]
    provider.add(responses.POST, f"{MP_API}/v1/payments", status=201, json=answer)
    response = owner_client.post(reverse("billing_checkout"),
                                 {"credits": "1000", "gateway": "mercadopago", "method": "pix"})
    with scopes_disabled():
        payment = Payment.objects.get(tenant=owner_client.tenant)
    assert payment.pix_qr_code == PIX_CODE and payment.pix_qr_code_base64
    [symbol] = decode(Image.open(io.BytesIO(base64.b64decode(payment.pix_qr_code_base64))))
    assert symbol.data.decode() == PIX_CODE  # what a bank's app reads is the copy-and-paste code
    page = owner_client.get(response.url).content.decode()
    assert f'src="data:image/png;base64,{payment.pix_qr_code_base64}"' in page
    assert json.loads(provider.calls[0].request.body)["description"] == "1.000 créditos de mensagens"


@pytest.mark.django_db
def test_status_answers_pending_then_paid_after_the_signed_webhook(gateway_settings, owner_client, provider):
    payment = pix_payment(owner_client.tenant)
    response = status_of(owner_client, payment)
    assert response.status_code == 204 and response["X-Payment-Status"] == "pending"
    # Asked without saying what it shows, it answers the state (pending, still polling).
    pending = status_of(owner_client, payment, shown=None)
    assert pending.status_code == 200 and 'data-status="pending"' in pending.content.decode()
    assert "hx-trigger" in pending.content.decode()

    # A forged notification changes nothing.
    mp_answers(provider, payment, "approved")
    assert post_mp(owner_client, payment.external_id, signature="ts=1,v1=" + "0" * 64).status_code == 400
    assert status_of(owner_client, payment).status_code == 204

    # Mercado Pago's signed webhook: the payment is fetched, approved, applied.
    assert post_mp(owner_client, payment.external_id).json()["result"] == "applied"
    response = status_of(owner_client, payment)
    page = response.content.decode()
    assert response.status_code == 200 and response["X-Payment-Status"] == "paid"
    assert 'data-status="paid"' in page and "Pagamento confirmado. Obrigado!" in page
    assert reverse("billing_receipt", args=[payment.reference]) in page
    assert "hx-trigger" not in page  # the new state stops the polling
    assert PIX_CODE not in page


@pytest.mark.django_db
def test_status_shows_a_rejected_pix_with_try_again(gateway_settings, owner_client, provider):
    payment = pix_payment(owner_client.tenant)
    mp_answers(provider, payment, "rejected")
    assert post_mp(owner_client, payment.external_id).json()["result"] == "applied"
    page = status_of(owner_client, payment).content.decode()
    assert 'data-status="failed"' in page and "O pagamento foi recusado." in page
    assert "Tentar novamente" in page and '<input type="hidden" name="method" value="pix">' in page
    assert "gateway reported" not in page


@pytest.mark.django_db
def test_status_of_another_companys_payment_is_404(gateway_settings, client, make_owner):
    _, tenant_a = make_owner()
    user_b, _tenant_b = make_owner()
    payment = pix_payment(tenant_a)
    client.force_login(user_b)
    assert status_of(client, payment).status_code == 404
    assert status_of(client, payment, shown=None).status_code == 404


@pytest.mark.django_db
def test_a_company_suspended_for_non_payment_can_follow_its_pix(gateway_settings, owner_client):
    from whago import services as accounts
    from whago.models import SuspensionKind

    payment = pix_payment(owner_client.tenant)
    accounts.suspend_tenant(owner_client.tenant, reason="Fatura vencida", kind=SuspensionKind.NONPAYMENT)
    assert owner_client.get(reverse("billing_payment", args=[payment.reference])).status_code == 200
    assert status_of(owner_client, payment).status_code == 204


@pytest.mark.django_db(transaction=True)
def test_in_the_browser_copy_then_the_confirmation_appears_by_itself(gateway_settings, client, make_owner,
                                                                     provider, browser):  # noqa: F811
    user, tenant = make_owner(company="Padaria Pão Quente")
    client.force_login(user)
    payment = pix_payment(tenant, image=qr_png_base64(PIX_CODE))
    browser.cookies = session_cookie(client, browser.base)
    page = browser.open(PHONE)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=browser.base)
    page.goto(f"{browser.base}{reverse('billing_payment', args=[payment.reference])}")
    expect(page.locator("#pix img")).to_be_visible()
    page.get_by_role("button", name="Copiar").click()
    expect(page.locator("[data-copy-status]")).to_have_text("Copiado!")
    assert page.evaluate("navigator.clipboard.readText()") == PIX_CODE
    page.evaluate("window.__sameDocument = 'yes'")
    assert browser.check(page, "billing_pix") == []

    # The buyer pays in the bank's app; Mercado Pago notifies us; the open page changes by itself.
    mp_answers(provider, payment, "approved")
    assert post_mp(client, payment.external_id).json()["result"] == "applied"
    expect(page.locator("[data-confirmed]")).to_have_text("Pagamento confirmado. Obrigado!")
    expect(page.locator("#payment-state")).to_have_attribute("data-status", "paid")
    assert page.evaluate("window.__sameDocument") == "yes"  # no reload: the state was swapped in
    expect(page.get_by_role("link", name="Recibo")).to_be_visible()
    assert browser.check(page, "billing_pix_paid") == []
    page.get_by_role("link", name="Recibo").click()
    expect(page.locator("#customer")).to_contain_text("Padaria Pão Quente")
    expect(page.locator("table")).to_contain_text("1.000 créditos de mensagens")
    assert browser.check(page, "billing_receipt") == []
