"""A send interrupted after WAHA took the message (the worker died before recording WAHA's id) is
settled from evidence: WAHA's own acks, stored by the receiver but unmatched, give the message its
id and status. Without evidence, or with more than one candidate, nothing is guessed: the message
fails saying it may have been delivered, and it is not sent again."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from chips import services
from chips.models import Chip, Message
from waha.models import WebhookEvent

from .conftest import placed_chip

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def interrupted(make_owner):
    """A message claimed a minute ago by a sender that is gone (no lock held), with no WAHA id."""
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=Chip.Status.WORKING)
    with scopes_disabled():
        message = Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Olá",
                                         attempted_at=timezone.now() - timedelta(minutes=1), attempts=1)
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

    assert services.deliver(message.pk) is None

    settled = reload(message)
    assert (settled.status, settled.waha_id) == (Message.Status.DELIVERED, "true_5511988887777@c.us_3EB0AAA1")
    assert settled.error == "" and settled.attempts == 1  # settled, not sent again


@pytest.mark.parametrize("evidence", ["none", "two candidates", "an id another message has"])
def test_without_clear_evidence_nothing_is_guessed(interrupted, evidence):
    chip, message = interrupted
    if evidence == "two candidates":
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 1)
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA2", 2, 2)
    elif evidence == "an id another message has":
        with scopes_disabled():
            Message.objects.create(tenant=chip.tenant, chip=chip, peer="+5511988887777", body="Antes",
                                   status=Message.Status.DELIVERED, waha_id="true_5511988887777@c.us_3EB0AAA1")
        stored_ack(chip, "true_5511988887777@c.us_3EB0AAA1", 2, 1)

    services.deliver(message.pk)

    failed = reload(message)
    assert failed.status == Message.Status.FAILED and failed.waha_id == ""
    assert "pode ter chegado" in failed.error  # "may have been delivered"


def test_a_late_ack_settles_a_message_already_failed_as_interrupted(interrupted):
    chip, message = interrupted
    services.deliver(message.pk)
    assert reload(message).status == Message.Status.FAILED  # no evidence yet: in doubt

    waha_id = "true_5511988887777@c.us_3EB0LATE"
    services.apply_ack(chip.tenant, chip.session_name, waha_id, 3, {"id": waha_id, "fromMe": True, "ack": 3})

    settled = reload(message)
    assert (settled.status, settled.waha_id, settled.error) == (Message.Status.READ, waha_id, "")
    # Another late ack to that number, with no other interrupted message, adopts nothing.
    other = "true_5511988887777@c.us_3EB0MORE"
    assert services.apply_ack(chip.tenant, chip.session_name, other, 2, {"id": other, "fromMe": True}) is None
