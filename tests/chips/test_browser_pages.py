"""The portal's pages in a real browser at 390 px (a phone) and 1280 px: no horizontal overflow, no English
left on a pt-BR page, no console errors; screenshots in tests/artifacts/. And what changes live does so
without a reload (the recipients table of a running campaign)."""
from datetime import time, timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import campaigns, contacts
from chips.models import CampaignRecipient, Message

from .browserkit import ARTIFACTS, LAPTOP, PHONE, browser, session_cookie  # noqa: F401 - fixture
from .conftest import placed_chip

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
R = CampaignRecipient.Status


def running_campaign(tenant, chip, people: int = 3):
    group = contacts.create_list(tenant, "Clientes da loja")
    for n in range(people):
        contacts.save_contact(tenant, phone=f"11 98888-{n:04d}", name=f"Cliente {n}", consent_source="balcão",
                              consent_at=timezone.now() - timedelta(days=1), lists=[group],
                              fields={"cidade": "Campinas"})
    campaign = campaigns.save_campaign(
        tenant, name="Ofertas de verão", template="Oi {primeiro_nome}, ofertas em {cidade|sua cidade}!",
        lists=[group], chips=[chip], pace_per_minute=10, window_days=list(range(7)), window_start=time(0),
        window_end=time(23, 59))
    return campaigns.start(campaign), group


def mark_sent(campaign, chip, recipient, status=Message.Status.DELIVERED):
    """What the sender and WAHA's acks do to a recipient, in the database."""
    now = timezone.now()
    with scopes_disabled():
        message = Message.objects.create(tenant_id=campaign.tenant_id, chip=chip, direction=Message.Direction.OUT,
                                         peer=recipient.phone, body="Oi", status=status, sent_at=now,
                                         delivered_at=now if status != Message.Status.SENT else None)
        CampaignRecipient.objects.filter(pk=recipient.pk).update(status=R.SENT, message=message, sent_at=now, chip=chip)


@pytest.fixture
def owner_in_browser(client, make_owner):
    user, tenant = make_owner(company="Padaria Pão Quente")
    client.force_login(user)
    return tenant, client


def test_the_recipients_table_follows_the_counters_without_a_reload(owner_in_browser, browser):  # noqa: F811
    tenant, client = owner_in_browser
    chip = placed_chip(tenant)
    campaign, _group = running_campaign(tenant, chip)
    with scopes_disabled():
        first, second, third = CampaignRecipient.objects.filter(campaign=campaign).order_by("pk")
    browser.cookies = session_cookie(client, browser.base)
    page = browser.open(LAPTOP)
    page.goto(f"{browser.base}/campanhas/{campaign.pk}/")
    assert page.locator("#recipient-rows tr[data-outcome=pending]").count() == 3
    page.evaluate("window.__noReload = 'same page'")

    mark_sent(campaign, chip, first)
    mark_sent(campaign, chip, second, Message.Status.SENT)
    page.wait_for_selector(f"#recipient-{first.pk}[data-outcome=delivered]")
    page.wait_for_selector(f"#recipient-{second.pk}[data-outcome=sent]")
    assert page.evaluate("window.__noReload") == "same page"
    counters = {key: page.inner_text(f"[data-counter={key}] strong") for key in ("pending", "sent", "delivered")}
    assert counters == {"pending": "1", "sent": "2", "delivered": "1"}
    # The filter shown is kept by the refresh.
    page.select_option("#id_outcome", "pending")
    page.wait_for_function("document.querySelectorAll('#recipient-rows tr[id^=recipient-]').length === 1")
    mark_sent(campaign, chip, third)
    page.wait_for_function("document.querySelectorAll('#recipient-rows tr[id^=recipient-]').length === 0")
    assert page.inner_text("[data-counter=pending] strong") == "0"
    page.screenshot(path=str(ARTIFACTS / "page_campaign_live_1280.png"), full_page=True)
