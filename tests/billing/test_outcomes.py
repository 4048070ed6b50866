"""Issue 18 (payments): every way a payment can end badly is told in plain pt-BR with "Tentar novamente";
sandbox test payments are not counted as money received."""
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from billing.failures import FailureCode
from billing.models import Payment

from .conftest import pending_payment

pytestmark = pytest.mark.django_db

# (status, failure code) as the checkout, the webhooks and the buyer's return leave them.
OUTCOMES = [
    ("failed", FailureCode.UNAVAILABLE),  # the provider could not be reached at checkout
    ("failed", FailureCode.REFUSED),  # the provider refused the request
    ("failed", FailureCode.DECLINED),  # a webhook said rejected
    ("canceled", FailureCode.CANCELED),  # a webhook said cancelled / expired (an unpaid PIX)
    ("failed", ""),  # older rows without a code
    ("canceled", ""),
]


@pytest.mark.parametrize(("status", "code"), OUTCOMES)
def test_every_bad_outcome_is_explained_in_portuguese_with_try_again(owner_client, status, code):
    payment = pending_payment(owner_client.tenant, gateway="mercadopago", external_id=f"17{len(code)}{status}",
                              method="pix", status=status, failure_code=code,
                              failure_reason="gateway reported failed: HTTPSConnectionPool")
    page = owner_client.get(reverse("billing_payment", args=[payment.reference])).content.decode()
    with scopes_disabled():
        message = Payment.objects.get(pk=payment.pk).failure_message
    assert message and message in page
    assert "tente novamente" in message.lower(), message
    assert '<button type="submit" class="primary">Tentar novamente</button>' in page
    assert "gateway reported" not in page and "HTTPSConnectionPool" not in page


def test_sandbox_payments_are_not_counted_as_money_received(client, operator, make_owner):
    _, tenant = make_owner(company="Padaria Pão Quente")
    now = timezone.now()
    with scopes_disabled():
        for gateway, amount in (("mercadopago", "49.90"), ("stripe", "197.00"), ("sandbox", "1000.00")):
            Payment.objects.create(tenant=tenant, kind="credits", credits=1000, amount=Decimal(amount),
                                   gateway=gateway, status="paid", paid_at=now)
    client.force_login(operator)
    page = client.get(reverse("admin:whago_tenant_changelist")).content.decode()
    assert "2 pagos, R$ 246,90" in page
