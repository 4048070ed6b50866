"""A batch larger than what is left of the quota sends what is left, then the campaign pauses."""
import uuid
from datetime import time as clock

import pytest
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from billing import limits
from chips import campaigns, contacts, dispatch
from chips.models import Campaign, CampaignRecipient, Contact
from tests.chips.campaignkit import SimChips
from tests.chips.conftest import set_plan

pytestmark = pytest.mark.django_db
R = CampaignRecipient.Status


@pytest.fixture
def sim_kit(tmp_path):
    kit = SimChips(tmp_path)
    yield kit
    kit.stop()


def test_the_rest_of_the_quota_is_used_before_the_campaign_pauses(sim_kit, make_owner, settings):
    settings.CAMPAIGN_PACE_LIMITS = ["*=0"]  # no pace: lanes send batches
    _user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    [chip] = sim_kit.make(tenant, ["5511999990042"])
    group = contacts.create_list(tenant, "Quota")
    with scopes_disabled():
        for n in range(8):
            contact = Contact.objects.create(tenant=tenant, phone=f"+5511987650{n:03d}", name=f"Pessoa {n}",
                                             consent_source="form", consent_at=timezone.now())
            contact.lists.add(group)
    campaign = campaigns.start(campaigns.save_campaign(
        tenant, name="Cota", template="Oi {nome}", lists=[group], chips=[chip], window_days=list(range(7)),
        window_start=clock(0), window_end=clock(23, 59), pace_per_minute=0))
    # Earlier sends of the day used all but 5 messages of the plan; no credits.
    limits.reserve_messages(tenant, limits.remaining_quota(tenant)["sendable"] - 5)
    assert limits.remaining_quota(tenant)["sendable"] == 5
    assert limits.credit_balance(tenant) == 0

    token = uuid.uuid4()
    with scope(tenant=tenant):  # as in the lane task
        assert dispatch.send_batch(campaign, chip, token, 100) == dispatch.DONE

    with scopes_disabled():
        statuses = sorted(CampaignRecipient.objects.filter(campaign=campaign).values_list("status", flat=True))
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.RUNNING
    assert statuses == [R.PENDING] * 3 + [R.SENT] * 5
    assert len(sim_kit.sends_by_chat([chip], "Oi")) == 5
    assert limits.remaining_quota(tenant)["sendable"] == 0

    # Nothing left: the next batch pauses the campaign with the reason, its recipients kept pending.
    with scope(tenant=tenant):
        assert dispatch.send_batch(campaign, chip, token, 100) == dispatch.STOP
        paused = Campaign.objects.get(pk=campaign.pk)
        pending = CampaignRecipient.objects.filter(campaign=campaign, status=R.PENDING).count()
    assert paused.status == Campaign.Status.PAUSED
    assert paused.status_reason.startswith(_quota_reason_start())
    assert pending == 3
    assert len(sim_kit.sends_by_chat([chip], "Oi")) == 5


def _quota_reason_start() -> str:
    from django.utils.translation import gettext as _

    return _("Message quota exceeded: %(requested)s message(s) requested, "
             "%(available)s left today including credits. Buy credits or upgrade "
             "your plan on the Billing page.").split("%")[0]
