"""A send whose lease expired (its worker died, or WAHA's answer was lost) is settled from evidence
(chips.sending.settle): WAHA's own acks, stored by the receiver but unmatched, give the message its id
and status. Without that evidence WAHA's record of the chat is asked (tests/chips/test_sending.py does
that against the simulator); while WAHA cannot be asked, the message waits, and past a bound it fails
saying it may have been delivered. Nothing is guessed between several candidates, nothing is sent twice."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from chips import inbox, sending
from chips.models import Chip, Message
from waha.models import WebhookEvent

from .conftest import placed_chip

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def interrupted(make_owner):
    """A message claimed a minute ago by a sender that is gone (its lease expired), with no WAHA id.
    Its chip's WAHA server does not answer (placed_chip: no runtime), so only stored acks are evidence."""
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=Chip.Status.WORKING)
    now = timezone.now()
    with scopes_disabled():
        message = Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Olá",
                                         attempted_at=now - timedelta(minutes=1), attempts=1,
                                         lease_token="7d5c3a1e-0000-4000-8000-000000000001",
                                         leased_until=now - timedelta(seconds=30))
    return chip, message


def stored_ack(chip: Chip, waha_id: str, ack: int, n: int) -> None:
    session = chip.waha_session
    with scopes_disabled():
        WebhookEvent.objects.create(
            tenant_id=chip.tenant_id, container_id=session.container_id, session=session.remote_name,
            event_id=f"unsigned:{waha_id}:{ack}:{n}", event="message.ack",
            payload={"event": "message.ack", "session": session.remote_name,
                     "payload": {"id": waha_id, "from": "5511988887777@c.us", "fromMe": True, "ack": ack}},
        )


def reload(message: Message) -> Message:
    with scopes_disabled():
        return Message.objects.get(pk=message.pk)


def test_stored_acks_settle_an_interrupted_send(interrupted):
    chip, message = interrupted
    stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 1, 1)
    stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 2)
    stored_ack(chip, "true_5511999990000@c.us_3EB0OTHER", 2, 3)  # another chat: not evidence

    assert sending.sweep() == {"settled": 1, "requeued": 0}

    settled = reload(message)
    assert (settled.status, settled.waha_id) == (Message.Status.DELIVERED, "true_5511988887777@c.us_3EB0AAA1")
    assert settled.error == "" and settled.attempts == 1  # settled, not sent again
    assert settled.lease_token is None and settled.leased_until is None


def test_a_live_lease_is_left_to_its_sender(interrupted):
    chip, message = interrupted
    stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 1)
    with scopes_disabled():
        Message.objects.filter(pk=message.pk).update(leased_until=timezone.now() + timedelta(seconds=30))
    with scope(tenant=chip.tenant_id):  # as the sweep settles it
        assert sending.settle(message.pk) is None
    assert sending.sweep() == {"settled": 0, "requeued": 0}
    assert reload(message).status == Message.Status.QUEUED


@pytest.mark.parametrize("evidence", ["none", "two candidates", "an id another message has"])
def test_without_clear_evidence_nothing_is_guessed(interrupted, evidence, settings):
    chip, message = interrupted
    if evidence == "two candidates":
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 1)
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA2", 2, 2)
    elif evidence == "an id another message has":
        with scopes_disabled():
            Message.objects.create(tenant=chip.tenant, chip=chip, peer="+5511988887777", body="Antes",
                                   status=Message.Status.DELIVERED, waha_id="true_5511988887777@c.us_3EB0AAA1")
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 1)

    # WAHA's record cannot be read (its server does not answer): the message waits for the next sweep.
    with scope(tenant=chip.tenant_id):  # as the sweep settles it
        assert sending.settle(message.pk) is None
    waiting = reload(message)
    assert waiting.status == Message.Status.QUEUED and waiting.lease_token is not None

    # Past the bound (the attempt was a minute ago), it fails as "may have been delivered".
    settings.CHIPS_SEND_SETTLE_GIVE_UP_SECONDS = 30
    with scope(tenant=chip.tenant_id):
        assert sending.settle(message.pk) == sending.FAILED
    failed = reload(message)
    assert failed.status == Message.Status.FAILED and failed.waha_id == ""
    assert "pode ter chegado" in failed.error  # "may have been delivered"
    assert failed.lease_token is None and failed.attempts == 1


def test_a_late_ack_settles_a_message_already_failed_as_interrupted(interrupted, settings):
    chip, message = interrupted
    settings.CHIPS_SEND_SETTLE_GIVE_UP_SECONDS = 30
    with scope(tenant=chip.tenant_id):
        sending.settle(message.pk)
    assert reload(message).status == Message.Status.FAILED  # no evidence yet: in doubt

    waha_id = "true_5511988887777@c.us_3EB0LATE"
    inbox.apply_ack(chip.tenant, chip.session_name, waha_id, 3, {"id": waha_id, "fromMe": True, "ack": 3})

    settled = reload(message)
    assert (settled.status, settled.waha_id, settled.error) == (Message.Status.READ, waha_id, "")
    # Another late ack to that number, with no other interrupted message, adopts nothing.
    other = "true_5511988887777@c.us_3EB0MORE"
    assert inbox.apply_ack(chip.tenant, chip.session_name, other, 2, {"id": other, "fromMe": True}) is None
