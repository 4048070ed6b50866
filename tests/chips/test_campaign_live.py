"""The recipients table of a running campaign refreshes with the counters: one poll brings the counters
and the rows shown (same page, same filters), read from one snapshot."""
import pytest
from django_scopes import scopes_disabled

from chips import campaigns
from chips.models import CampaignRecipient, Message

from .test_campaign_report import sent_campaign

pytestmark = pytest.mark.django_db


def test_the_progress_poll_brings_the_rows_shown_out_of_band(owner_client):
    campaign = sent_campaign(owner_client.tenant, [1, 2, 3])
    with scopes_disabled():
        pending = CampaignRecipient.objects.filter(campaign=campaign).order_by("pk").last()
        CampaignRecipient.objects.filter(pk=pending.pk).update(status=CampaignRecipient.Status.PENDING, message=None)
    url = f"/campanhas/{campaign.pk}/progresso/"

    alone = owner_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="progress"' in alone and '<tbody id="recipient-rows"' not in alone  # no table shown: counters only

    body = owner_client.get(url, {"rows": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert '<tbody id="recipient-rows" data-page="1" hx-swap-oob="true">' in body
    progress = campaigns.progress(campaign)
    assert (progress["sent"], progress["delivered"], progress["pending"]) == (2, 1, 1)
    assert body.count('data-outcome="pending"') == progress["pending"] == 1
    assert body.count('data-outcome="delivered"') == progress["delivered"]
    assert body.count('data-outcome="sent"') == progress["sent"] - progress["delivered"]

    # The filter of the table shown comes along (hx-include of the filter form).
    only_pending = owner_client.get(url, {"rows": "1", "outcome": "pending"}, HTTP_HX_REQUEST="true")
    html = only_pending.content.decode()
    assert html.count("<tr id=\"recipient-") == 1 and 'data-outcome="pending"' in html

    # The table follows the sends: the row changes with the counters.
    with scopes_disabled():
        message = Message.objects.filter(campaign_recipient__campaign=campaign).first()
        Message.objects.filter(pk=message.pk).update(status=Message.Status.READ)
    after = owner_client.get(url, {"rows": "1"}, HTTP_HX_REQUEST="true").content.decode()
    assert after.count('data-outcome="read"') == campaigns.progress(campaign)["read"] == 1


def test_the_page_asks_for_its_rows_with_each_poll(owner_client):
    campaign = sent_campaign(owner_client.tenant, [1])
    html = owner_client.get(f"/campanhas/{campaign.pk}/").content.decode()
    assert 'hx-include="#recipient-filters"' in html and "recipient-rows" in html[:html.index('id="progress"') + 600]
