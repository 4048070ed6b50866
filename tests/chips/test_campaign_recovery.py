"""The dispatcher's guarantees, driven directly: claims of a dead lane recovered from what their messages
show, a lane task delivered twice, lanes running at once, and a chip that refuses sends behind our back."""
import threading
import uuid
from datetime import time, timedelta

import pytest
import redis
from django.conf import settings
from django.db import connections
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from billing import limits
from billing.models import Reservation, UsageCounter
from chips import campaigns, contacts, dispatch, sending
from chips.models import Campaign, CampaignChip, CampaignRecipient, Message

from .campaignkit import SimChips
from .conftest import placed_chip, set_plan

R = CampaignRecipient.Status


def consenting(tenant, phone, lists):
    return contacts.save_contact(tenant, phone=phone, name=f"Pessoa {phone[-4:]}", consent_source="site",
                                 consent_at=timezone.now() - timedelta(days=1), lists=list(lists))


def started(tenant, lists, chips, pace):
    campaign = campaigns.save_campaign(tenant, name="C", template="Oferta para {nome}", lists=lists, chips=chips,
                                       window_days=list(range(7)), window_start=time(0), window_end=time(23, 59),
                                       pace_per_minute=pace)
    return campaigns.start(campaign)


def rows(campaign) -> dict[int, CampaignRecipient]:
    with scopes_disabled():
        return {r.pk: r for r in CampaignRecipient.objects.filter(campaign=campaign)}


@pytest.mark.django_db
def test_the_kick_settles_a_dead_lanes_claims_from_their_messages(make_owner, settings):
    settings.CHIPS_SEND_SETTLE_GIVE_UP_SECONDS = 30  # the chip's WAHA does not answer: no record to ask
    _user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    group = contacts.create_list(tenant, "G")
    for n in range(4):
        consenting(tenant, f"+551198888000{n}", [group])
    campaign = started(tenant, [group], [chip], pace=60)
    with scopes_disabled():
        lane = CampaignChip.objects.get(campaign=campaign, chip=chip)
        token = lane.lease_token
        # A lane claimed four recipients and died at different points.
        ids = dispatch._claim(campaign, chip, token, 4)
        recipients = list(CampaignRecipient.objects.filter(pk__in=ids).order_by("pk"))
        reservation = limits.reserve_messages(tenant, 3)
        pairs = dispatch._create_messages(campaign, chip, [(r, f"Oi {r.pk}") for r in recipients[1:]], token,
                                          reservation, sending.Sender())
        no_message, never_tried, in_doubt, sent = recipients
        # Given back by its sender (never handed to WAHA) before the lane died.
        Message.objects.filter(pk=pairs[0][1].pk).update(lease_token=None, leased_until=None, attempted_at=None,
                                                         attempts=0)
        # Handed over a minute ago by the dead worker, never answered (its lease expired since).
        Message.objects.filter(pk=pairs[1][1].pk).update(attempted_at=timezone.now() - timedelta(minutes=1),
                                                         leased_until=timezone.now() - timedelta(seconds=30))
        Message.objects.filter(pk=pairs[2][1].pk).update(status=Message.Status.SENT, waha_id="true_x_1",
                                                         sent_at=timezone.now(), lease_token=None, leased_until=None)
        never_tried_message = pairs[0][1].pk
        used = UsageCounter.objects.get(tenant=tenant, period=UsageCounter.Period.DAY).used

    # While the lane's lease is alive, nothing is touched.
    assert dispatch.kick()["recovered"] == 0
    with scopes_disabled():
        CampaignRecipient.objects.filter(pk__in=ids).update(claimed_at=timezone.now() - timedelta(minutes=5))
        CampaignChip.objects.filter(pk=lane.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert dispatch.kick()["recovered"] == 4

    after = rows(campaign)
    assert after[no_message.pk].status == R.PENDING and after[no_message.pk].chip_id is None
    assert after[never_tried.pk].status == R.PENDING and after[never_tried.pk].message_id is None
    assert after[in_doubt.pk].status == R.FAILED
    assert after[sent.pk].status == R.SENT and after[sent.pk].sent_at
    with scopes_disabled():
        assert not Message.objects.filter(pk=never_tried_message).exists()  # provably unsent: gone
        assert Reservation.objects.get(pk=reservation.pk).released == 1  # and its quota given back
        assert UsageCounter.objects.get(tenant=tenant, period=UsageCounter.Period.DAY).used == used - 1
        doubtful = Message.objects.get(pk=pairs[1][1].pk)
        assert doubtful.status == Message.Status.FAILED and after[in_doubt.pk].error == doubtful.error
        assert doubtful.attempts == 1  # marked, never sent again
        # The lane's lease was taken over by a new lane.
        assert CampaignChip.objects.get(pk=lane.pk).lease_token not in (None, token)
    # Running the kick again changes nothing more.
    assert dispatch.kick()["recovered"] == 0


@pytest.fixture
def empty_broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield
    client.flushdb()


def run_lanes(specs, tenant) -> list[BaseException]:
    """Run dispatch.run_lane for each (campaign, chip, token) at once, in threads, each in the tenant's scope
    (as the lane task runs it); returns their errors."""
    errors: list[BaseException] = []

    def lane(campaign_id, chip_id, token):
        try:
            with scope(tenant=tenant):
                dispatch.run_lane(campaign_id, chip_id, token)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=lane, args=spec) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_duplicated_and_concurrent_lanes_send_each_recipient_once_and_a_refusing_chip_is_left_alone(
        make_owner, tmp_path, settings, empty_broker):
    settings.CAMPAIGN_PACE_LIMITS = ["*=0"]
    settings.CAMPAIGN_BATCH_SIZE = 4
    _user, tenant = make_owner()
    set_plan(tenant, "ENTERPRISE")
    kit = SimChips(tmp_path)
    try:
        chip_a, chip_b, chip_c = kit.make(tenant, ["5511999990011", "5511999990012", "5511999990013"])
        # Chip C's session stops behind our back: the database still says it is connected.
        assert kit.sim_of[chip_c.pk].post(f"/api/sessions/{chip_c.session_name}/stop").status_code == 201
        group = contacts.create_list(tenant, "Todos")
        people = [consenting(tenant, f"+55119777{n:05d}", [group]) for n in range(40)]
        campaign = started(tenant, [group], [chip_a, chip_b, chip_c], pace=0)
        with scopes_disabled():
            tokens = dict(CampaignChip.objects.filter(campaign=campaign).values_list("chip_id", "lease_token"))

        errors = run_lanes([
            (campaign.pk, chip_a.pk, tokens[chip_a.pk]),
            (campaign.pk, chip_a.pk, tokens[chip_a.pk]),  # the same task delivered twice
            (campaign.pk, chip_a.pk, uuid.uuid4()),  # a stray lane: the lease is taken, it does nothing
            (campaign.pk, chip_b.pk, tokens[chip_b.pk]),
            (campaign.pk, chip_c.pk, tokens[chip_c.pk]),
        ], tenant)
        assert errors == []

        sends = kit.sends_by_chat([chip_a, chip_b, chip_c], "Oferta")
        assert sends == {p.phone.lstrip("+") + "@c.us": 1 for p in people}
        assert kit.sent(chip_c) == [] and kit.sent(chip_a) and kit.sent(chip_b)
        with scopes_disabled():
            assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.COMPLETED
            recipients = list(CampaignRecipient.objects.filter(campaign=campaign).select_related("message"))
            assert {r.status for r in recipients} == {R.SENT}
            assert {r.message.chip_id for r in recipients} <= {chip_a.pk, chip_b.pk}
            # What chip C took went back to the pool once and was sent by another chip.
            moved = [r for r in recipients if r.retries]
            assert moved and all(r.retries == 1 for r in moved)
            assert CampaignChip.objects.get(campaign=campaign, chip=chip_c).retry_at > timezone.now()
            # Exactly 40 messages counted against the quota: those given back were released.
            assert UsageCounter.objects.get(tenant=tenant, period=UsageCounter.Period.DAY).used == 40
            assert Message.objects.filter(tenant=tenant, source=f"campaign:{campaign.pk}").count() == 40
        # The kick does not relaunch chip C before its back-off ends.
        with scopes_disabled():
            Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
            campaign.refresh_from_db()
            CampaignChip.objects.filter(campaign=campaign).update(lease_token=None, lease_until=None)
        assert dispatch.launch_lanes(campaign) == 2
    finally:
        kit.stop()
