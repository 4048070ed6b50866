"""WAHA's webhooks while Redis is down: the receiver answers 503 with Retry-After (never 500), WAHA
delivers again, and nothing is lost or doubled — the inbound message is stored once and the tenant's
own webhook gets it once, also when the event was stored but its delivery task could not be queued."""
import json

import pytest
from django_scopes import scopes_disabled

from chips import outgoing
from chips.models import Message, WebhookDelivery
from tests.chips.campaignkit import sim_chips  # noqa: F401 - fixture
from tests.chips.conftest import set_plan, wait_until
from tests.conftest import Worker
from whago.rest import RETRY_AFTER_SECONDS

from .brokerkit import fault_broker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True)]


def inbound(text: str) -> list[Message]:
    with scopes_disabled():
        return list(Message.objects.filter(direction=Message.Direction.IN, body=text))


def attempts_of(sim, event: str = "message") -> list[dict]:
    """The simulator's own log of its webhook deliveries of that event (status of the last attempt)."""
    deliveries = sim.get("/_sim/webhooks", params={"limit": 1000}).json()["deliveries"]
    return [d for d in deliveries if d["event"] == event]


def test_waha_webhooks_get_503_while_redis_is_down_and_each_event_counts_once(
        live_server, sim_chips, fault_broker, make_owner, receiver, settings, tmp_path):  # noqa: F811
    _user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    (chip,) = sim_chips.make(tenant, ["5511999990001"])
    sim = sim_chips.sim_of[chip.pk]
    outgoing.set_webhook(tenant, receiver.url + "/hook")
    worker = Worker(tmp_path / "worker.log", fault_broker.worker_env(OUTGOING_WEBHOOK_OVERDUE_SECONDS="0"))
    try:
        # 1. Redis down, cache and broker (docker-compose.yml shares one server): the receiver cannot
        #    tell whether the tenant has a webhook, stores nothing and answers 503 with Retry-After.
        fault_broker.server.stop()
        sim_chips.inbound(chip, "5511987650001", "Oi durante a queda")
        refused = wait_until(lambda: [d for d in attempts_of(sim) if d["status"] == "503"], 60,
                             message="WAHA's first delivery refused with 503")
        assert all(d["status"] != "500" for d in attempts_of(sim))
        assert inbound("Oi durante a queda") == [] and refused[0]["delivered"] is False

        # 2. Only the broker down (the cache on another server, or Redis gone between the two): the event
        #    is stored and applied, its delivery task cannot be queued: 503 all the same, not 500.
        settings.CACHES = {**settings.CACHES, "default": settings.CACHES["default"] | {"LOCATION": settings.REDIS_URL}}
        sim_chips.inbound(chip, "5511987650002", "Oi só sem broker")
        wait_until(lambda: inbound("Oi só sem broker"), 60, message="the event stored while the broker is down")
        with scopes_disabled():
            lost = WebhookDelivery.objects.get(tenant=tenant, event="message.received",
                                               payload__data__body="Oi só sem broker")
        assert lost.status == WebhookDelivery.Status.PENDING and lost.attempts == 0  # its task was never queued

        # 3. Redis back: WAHA's retries go through (the second event's retry is a duplicate), the first
        #    event is stored once; beat's sweep queues the delivery whose task was lost.
        fault_broker.server.start()
        wait_until(lambda: inbound("Oi durante a queda"), 120, message="WAHA's retry of the refused event")

        def delivered() -> bool:
            outgoing.redeliver_webhooks.delay()  # what beat does every minute
            with scopes_disabled():
                received = WebhookDelivery.objects.filter(tenant=tenant, event="message.received")
                return received.count() == 2 and not received.filter(status=WebhookDelivery.Status.PENDING).exists()

        wait_until(delivered, 120, interval=1.0, message="both deliveries to the tenant's webhook")
        wait_until(lambda: all(d["delivered"] for d in attempts_of(sim)), 120, message="WAHA's retries to end")
        alive = worker.proc.poll() is None
    finally:
        worker.stop()

    events = [json.loads(r["body"]) for r in receiver.requests]
    bodies = [e["data"]["body"] for e in events if e["event"] == "message.received"]
    statuses = [d["status"] for d in attempts_of(sim)]
    print("\nWAHA webhooks through a Redis outage:",
          {"last statuses": statuses, "tenant webhook bodies": bodies, "worker alive": alive})
    assert alive and RETRY_AFTER_SECONDS > 0
    assert len(inbound("Oi durante a queda")) == len(inbound("Oi só sem broker")) == 1
    assert sorted(bodies) == ["Oi durante a queda", "Oi só sem broker"]  # each once
