"""The campaign report's chart data: a legend in the page's language (no "%%"), and bars when the
campaign fits in one or two periods (a line of one point is a lone dot)."""
import json
from datetime import time, timedelta

import pytest
from django.test.html import parse_html
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import campaigns, contacts
from chips.models import CampaignRecipient, Message

from .conftest import placed_chip

pytestmark = pytest.mark.django_db


def sent_campaign(tenant, minutes: list[int]):
    """A started campaign whose messages were sent `minutes` ago (one per recipient), half of them delivered."""
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    for n in range(len(minutes)):
        contacts.save_contact(tenant, phone=f"11 98888-{n:04d}", name=f"Pessoa {n}", consent_source="site",
                              consent_at=timezone.now() - timedelta(days=1), lists=[group])
    campaign = campaigns.start(campaigns.save_campaign(
        tenant, name="Relatório", template="Oi {nome}", lists=[group], chips=[chip], pace_per_minute=10,
        window_days=list(range(7)), window_start=time(0), window_end=time(23, 59)))
    now = timezone.now()
    with scopes_disabled():
        for n, (recipient, ago) in enumerate(zip(CampaignRecipient.objects.filter(campaign=campaign).order_by("pk"),
                                                  minutes, strict=True)):
            at = now - timedelta(minutes=ago)
            message = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                             peer=recipient.phone, body="Oi", sent_at=at,
                                             status=Message.Status.DELIVERED if n % 2 == 0 else Message.Status.SENT,
                                             delivered_at=at if n % 2 == 0 else None)
            CampaignRecipient.objects.filter(pk=recipient.pk).update(status=CampaignRecipient.Status.SENT,
                                                                      message=message, sent_at=at)
    return campaign


def chart_of(client, campaign) -> dict:
    html = client.get(f"/campanhas/{campaign.pk}/relatorio/").content.decode()
    node = next(n for n in _walk(parse_html(html)) if dict(n.attributes).get("id") == "rates-data")
    return json.loads("".join(c for c in node.children if isinstance(c, str)))


def _walk(node):
    yield node
    for child in getattr(node, "children", []):
        if not isinstance(child, str):
            yield from _walk(child)


def test_a_campaign_sent_in_one_period_draws_bars_with_a_translated_legend(owner_client):
    campaign = sent_campaign(owner_client.tenant, [1, 1, 1, 1])
    chart = chart_of(owner_client, campaign)
    assert chart["type"] == "bar" and len(chart["labels"]) == 1 and chart["delivered"] == [50.0]
    assert chart["legend"] == {"delivered": "Taxa de entrega (%)", "read": "Taxa de leitura (%)"}
    page = owner_client.get(f"/campanhas/{campaign.pk}/relatorio/").content.decode()
    assert "%%" not in page
    owner_client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert chart_of(owner_client, campaign)["legend"]["delivered"] == "Delivery rate (%)"


def test_a_campaign_over_several_periods_draws_a_line(owner_client):
    campaign = sent_campaign(owner_client.tenant, [1, 30, 60, 90])
    chart = chart_of(owner_client, campaign)
    assert chart["type"] == "line" and len(chart["labels"]) == 4
