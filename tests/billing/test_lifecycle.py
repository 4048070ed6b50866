"""Plan periods: prepaid months expire to past due, then to FREE; Stripe's return page confirms a session."""
from datetime import timedelta

import pytest
import responses
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from billing import limits, services
from billing.models import Subscription

from .conftest import STRIPE_API, pending_payment, plan, post_stripe, stripe_event, stripe_session

pytestmark = pytest.mark.django_db


def test_prepaid_period_goes_past_due_then_free(settings, make_owner, django_capture_on_commit_callbacks):
    settings.BILLING_GRACE_DAYS = 3
    _, tenant = make_owner()
    ended = timezone.now() - timedelta(days=1)
    with scopes_disabled():
        Subscription.objects.filter(tenant=tenant).update(plan=plan("BUSINESS"), current_period_end=ended,
                                                          gateway="mercadopago")
    assert services.expire_subscriptions() == 1
    with scopes_disabled():
        subscription = Subscription.objects.get(tenant=tenant)
    assert subscription.status == "past_due" and limits.chip_limit(tenant) == 3
    assert services.expire_subscriptions() == 0  # nothing new to do
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_subscriptions(now=ended + timedelta(days=4)) == 1
    subscription.refresh_from_db()
    assert subscription.plan.code == "FREE" and limits.chip_limit(tenant) == 1


def test_stripe_return_page_confirms_the_session(gateway_settings, owner_client, provider):
    payment = pending_payment(owner_client.tenant, gateway="stripe", external_id="cs_test_return")
    provider.add(responses.GET, f"{STRIPE_API}/v1/checkout/sessions/cs_test_return",
                 json=stripe_session("cs_test_return", reference=str(payment.reference)))
    response = owner_client.get(reverse("billing_return", args=[payment.reference]) + "?session_id=cs_test_return")
    assert response.status_code == 302
    assert limits.credit_balance(owner_client.tenant) == 1000
    # The webhook arriving afterwards finds the payment paid and adds nothing.
    post_stripe(owner_client, stripe_event("checkout.session.completed", stripe_session(
        "cs_test_return", reference=str(payment.reference)), event_id="evt_after_return"))
    assert limits.credit_balance(owner_client.tenant) == 1000


def test_unconfigured_or_unknown_gateways_have_no_webhook(settings, client):
    settings.STRIPE_SECRET_KEY = ""
    for gateway in ("stripe", "bitcoin", "sandbox"):
        response = client.post(f"/api/v1/webhooks/billing/{gateway}", data="{}", content_type="application/json")
        assert response.status_code == 404, gateway
