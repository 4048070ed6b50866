"""Redis restarted under a real worker in the middle of a campaign and a stream of single messages.

The worker (threads pool, as in docker-compose.yml) consumes from a Redis server of the test's
own, which is also the cache of the worker and of this process. While three chips send a campaign
and two hundred single messages are in flight, that server is stopped (SIGTERM: it writes its
append-only file) and started again on the same port. Counted in the simulators' own records:
recipients and messages lost (0), sent twice (0); the worker process stays alive and reconnects.
"""
import re
from datetime import time as clock
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled
from kombu.exceptions import OperationalError

from chips import campaigns, contacts, sending, tasks
from chips.models import Campaign, CampaignRecipient, Chip, Message
from tests.chips.campaignkit import CAMPAIGN_WORKER_ENV, sim_chips  # noqa: F401 - fixture
from tests.chips.conftest import set_plan, wait_until
from tests.conftest import Worker

from .brokerkit import fault_broker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True)]

R = CampaignRecipient.Status
OFFER, SINGLE = "Oferta de inverno", "Aviso avulso"
RECIPIENTS, SINGLES = 60, 200


def chat(phone: str) -> str:
    return phone.lstrip("+") + "@c.us"


def status_of(campaign) -> str:
    with scopes_disabled():
        return Campaign.objects.get(pk=campaign.pk).status


def sent_recipients(campaign) -> int:
    with scopes_disabled():
        return CampaignRecipient.objects.filter(campaign=campaign, status=R.SENT).count()


def singles_by_status(ids) -> dict[str, int]:
    with scopes_disabled():
        rows = Message.objects.filter(pk__in=ids).values_list("status", flat=True)
    counts: dict[str, int] = {}
    for status in rows:
        counts[status] = counts.get(status, 0) + 1
    return counts


def singles_sent(ids) -> int:
    counts = singles_by_status(ids)
    return sum(counts.get(s, 0) for s in (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ))


def queue_singles(tenant, chips, numbers) -> list[int]:
    """Single messages as the API queues them, one task each."""
    return [sending.send_message(tenant, chips[n % len(chips)], f"+5521977{n:06d}", text=f"{SINGLE} {n}")[0].pk
            for n in numbers]


def kick(counts: dict) -> None:
    """What beat does every few seconds; while the broker is down the publish fails, as beat's would."""
    try:
        tasks.kick_campaigns.delay()
        counts["kicks"] += 1
    except OperationalError:
        counts["kicks refused"] += 1


def test_worker_rides_out_a_redis_restart_mid_campaign(
        live_server, sim_chips, fault_broker, make_owner, settings, tmp_path):  # noqa: F811
    _user, tenant = make_owner()
    set_plan(tenant, "ENTERPRISE")  # pace up to 120 per minute per chip
    for key, value in CAMPAIGN_WORKER_ENV.items():
        setattr(settings, key, type(getattr(settings, key))(value))
    made = sim_chips.make(tenant, ["5511999990001", "5511999990002", "5511999990003"])
    with scopes_disabled():
        chips = list(Chip.objects.filter(pk__in=[c.pk for c in made]).order_by("pk"))  # WORKING by now
    group = contacts.create_list(tenant, "Clientes")
    people = [contacts.save_contact(tenant, phone=f"+5511988{n:06d}", name=f"Cliente {n}", consent_source="site",
                                    consent_at=timezone.now() - timedelta(days=1), lists=[group])
              for n in range(RECIPIENTS)]
    campaign = campaigns.save_campaign(tenant, name="Inverno", template=OFFER + " para {primeiro_nome}",
                                       lists=[group], chips=chips, window_days=list(range(7)),
                                       window_start=clock(0, 0), window_end=clock(23, 59), pace_per_minute=120)
    # Each single send holds its task 0.1 s after WAHA accepted it.
    worker = Worker(tmp_path / "worker.log",
                    fault_broker.worker_env(**CAMPAIGN_WORKER_ENV, CHIPS_SEND_PAUSE_AFTER_HTTP="0.1"),
                    concurrency=8)
    counts = {"kicks": 0, "kicks refused": 0}
    try:
        campaign = campaigns.start(campaign)
        singles = queue_singles(tenant, chips, range(SINGLES // 2))
        # Redis goes down while the campaign's lanes are mid-slice (tasks taken and not yet acknowledged)
        # and the worker is asking Redis for more.
        wait_until(lambda: singles_sent(singles) == len(singles) and sent_recipients(campaign) >= 6, 60,
                   message="the first single messages sent and the campaign under way")
        before = {"recipients sent before": sent_recipients(campaign), "singles sent before": len(singles)}
        fault_broker.server.restart(down_for=2.0)

        def reconnected():
            assert worker.proc.poll() is None, f"the worker died:\n{worker.log()[-6000:]}"
            return len(re.findall(r"Connected to redis://", worker.log())) >= 2

        wait_until(reconnected, 60, interval=0.2, message="the worker to reconnect to the restarted Redis")
        singles += queue_singles(tenant, chips, range(SINGLES // 2, SINGLES))

        def finished():
            kick(counts)
            return (status_of(campaign) == Campaign.Status.COMPLETED
                    and singles_sent(singles) + singles_by_status(singles).get(Message.Status.FAILED, 0) == SINGLES)

        wait_until(finished, 180, interval=1.0, message="the campaign and every single message to be settled")
        log = worker.log()
        alive = worker.proc.poll() is None
    finally:
        worker.stop()

    offers = sim_chips.sends_by_chat(chips, OFFER)
    notices = sim_chips.sends_by_chat(chips, SINGLE)
    expected_offers = {chat(p.phone) for p in people}
    expected_notices = {chat(f"+5521977{n:06d}") for n in range(SINGLES)}
    report = {
        **before,
        "redis restarts": fault_broker.server.restarts,
        **counts,
        "recipients lost": len(expected_offers - set(offers)),
        "recipients sent twice": sum(1 for n in offers.values() if n > 1),
        "singles lost": len(expected_notices - set(notices)),
        "singles sent twice": sum(1 for n in notices.values() if n > 1),
        "singles by status": singles_by_status(singles),
        "worker alive": alive,
        "worker reconnections": len(re.findall(r"Connected to redis://", log)) - 1,
        "acks the worker could not send": log.count("Couldn't ack"),
        "tasks failed by the outage": len(re.findall(r"raised unexpected: OperationalError", log)),
    }
    print("\nredis restart under load:", report)
    assert "Unrecoverable error" not in log, log[-6000:]
    assert alive
    assert report["recipients lost"] == report["recipients sent twice"] == 0, report
    assert report["singles lost"] == report["singles sent twice"] == 0, report
    assert set(offers) == expected_offers and set(notices) == expected_notices
    assert report["singles by status"].get(Message.Status.FAILED, 0) == 0, report
    assert sent_recipients(campaign) == RECIPIENTS
    # Nothing the worker had to publish during the outage (a lane's next slice, a retry) was dropped.
    assert report["tasks failed by the outage"] == 0, report
