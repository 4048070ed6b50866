"""The API while Redis (broker and cache) is down: 503 with a JSON error and Retry-After, and a
message it stored before its task could be queued is sent once Redis is back, exactly once."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import tasks
from chips.models import Chip, Message
from tests.chips.campaignkit import sim_chips  # noqa: F401 - fixture
from tests.chips.conftest import api, set_plan, wait_until  # noqa: F401 - fixture
from tests.conftest import Worker

from .brokerkit import fault_broker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True)]


def messages_with(key: str) -> list[Message]:
    with scopes_disabled():
        return list(Message.objects.filter(idempotency_key=key))


def send(client, chip, to: str, key: str):
    return client.post("/api/v1/messages/", {"chip": chip.pk, "to": to, "text": f"Pedido {key} confirmado"},
                       content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["error"]["code"] == "unavailable" and body["error"]["message"]
    assert int(response["Retry-After"]) == body["error"]["retry_after"] > 0


def test_api_answers_503_while_redis_is_down_and_the_message_it_stored_is_sent_once_after(
        live_server, sim_chips, fault_broker, make_owner, api, settings, tmp_path):  # noqa: F811
    _user, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    made = sim_chips.make(tenant, ["5511999990001"])
    with scopes_disabled():
        chip = Chip.objects.get(pk=made[0].pk)
    client = api(tenant)
    worker = Worker(tmp_path / "worker.log", fault_broker.worker_env())
    try:
        response = send(client, chip, "(11) 98765-0001", "before")
        assert response.status_code == 201, response.content
        wait_until(lambda: messages_with("before")[0].status != Message.Status.QUEUED, 20, message="a first send")

        # Redis down, as in docker-compose.yml where it is both the cache and the broker: the throttle's
        # counter cannot be read, nothing is stored, the client is told to come back.
        fault_broker.server.stop()
        response = send(client, chip, "(11) 98765-0002", "all-down")
        assert_unavailable(response)
        assert messages_with("all-down") == []

        # Only the broker down (its own server, or gone between the throttle and the publish): the message
        # was stored before its task could be queued. 503 all the same; the same key does not store twice.
        shared_cache = settings.CACHES["default"] | {"LOCATION": settings.REDIS_URL}
        settings.CACHES = {**settings.CACHES, "default": shared_cache}
        response = send(client, chip, "(11) 98765-0003", "stored")
        assert_unavailable(response)
        [stored] = messages_with("stored")
        assert stored.status == Message.Status.QUEUED
        again = send(client, chip, "(11) 98765-0003", "stored")
        assert again.status_code == 200 and again.json()["id"] == stored.pk
        assert len(messages_with("stored")) == 1

        # Redis back: the worker reconnects; the client's retry of the refused request goes through.
        fault_broker.server.start()
        response = send(client, chip, "(11) 98765-0002", "all-down")
        assert response.status_code == 201, response.content
        # The stored message has no task: the send sweep (beat) gives it one once it is stale
        # (CHIPS_SEND_REQUEUE_SECONDS).
        with scopes_disabled():
            Message.objects.filter(pk=stored.pk).update(created_at=timezone.now() - timedelta(minutes=30))

        def sent():
            tasks.sweep_sends.delay()  # what beat does every few seconds
            with scopes_disabled():
                return Message.objects.get(pk=stored.pk).status != Message.Status.QUEUED

        wait_until(sent, 60, interval=1.0, message="the stored message to be sent after the outage")
        wait_until(lambda: all(m.status != Message.Status.QUEUED for key in ("all-down", "stored")
                               for m in messages_with(key)), 20, message="every message sent")
        alive = worker.proc.poll() is None
    finally:
        worker.stop()

    sends = sim_chips.sends_by_chat([chip], "Pedido")
    print("\nAPI through a Redis outage:", {"sends per chat": sends, "worker alive": alive})
    assert alive
    assert sends == {"5511987650001@c.us": 1, "5511987650002@c.us": 1, "5511987650003@c.us": 1}
    for key in ("before", "all-down", "stored"):
        [message] = messages_with(key)
        assert message.status in (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ), key
