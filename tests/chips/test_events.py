"""WAHA events reaching chips through the real, signed webhook receiver: status, acks, inbound messages."""
import pytest
from django_scopes import scopes_disabled

from chips import lifecycle, outgoing, signals
from chips.models import Chip, Message, WebhookDelivery

from .conftest import chip_row, message_row, placed_chip, post_event

pytestmark = pytest.mark.django_db

CHAT = "5511988887777@c.us"


def sent_message(chip, waha_id: str = f"true_{CHAT}_3EB0AAAA", status: str = Message.Status.SENT) -> Message:
    with scopes_disabled():
        return Message.objects.create(
            tenant=chip.tenant, chip=chip, peer="+5511988887777", body="Olá", status=status, waha_id=waha_id,
            attempts=1,
        )


def ack(client, chip, message, value: int, event_id: str, name: str = ""):
    payload = {"id": message.waha_id, "from": "5511999990001@c.us", "to": CHAT, "fromMe": True, "ack": value,
               "ackName": name or {1: "SERVER", 2: "DEVICE", 3: "READ", -1: "ERROR"}[value]}
    response = post_event(client, chip, "message.ack", payload, event_id)
    assert response.status_code == 200, response.content
    return response.json()["status"]


def status_events(tenant) -> list[str]:
    with scopes_disabled():
        return [d.payload["data"]["status"] for d in
                WebhookDelivery.objects.filter(tenant=tenant, event="message.status").order_by("pk")]


def test_acks_move_a_message_forward_once_and_never_back(client, make_owner, receiver):
    _, tenant = make_owner()
    outgoing.set_webhook(tenant, receiver.url)
    chip = placed_chip(tenant)
    message = sent_message(chip)

    assert ack(client, chip, message, 2, "evt_1") == "stored"
    delivered = message_row(message.pk)
    assert delivered.status == Message.Status.DELIVERED and delivered.delivered_at
    # The same event again (WAHA retrying) and a second DEVICE ack: nothing changes, nothing is emitted.
    assert ack(client, chip, message, 2, "evt_1") == "duplicate"
    assert ack(client, chip, message, 2, "evt_2") == "stored"
    assert message_row(message.pk).delivered_at == delivered.delivered_at
    assert status_events(tenant) == ["DELIVERED"]

    ack(client, chip, message, 3, "evt_3")
    read = message_row(message.pk)
    assert read.status == Message.Status.READ and read.read_at and read.delivered_at == delivered.delivered_at
    # Late acks (SERVER, DEVICE, even ERROR) arriving after READ change nothing.
    for number, value in enumerate((1, 2, -1), start=4):
        ack(client, chip, message, value, f"evt_{number}")
    assert message_row(message.pk).status == Message.Status.READ
    assert message_row(message.pk).error == ""
    assert status_events(tenant) == ["DELIVERED", "READ"]


def test_an_error_ack_before_delivery_fails_the_message_with_the_reason(client, make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant)
    message = sent_message(chip)
    seen = []
    signals.message_status_changed.connect(lambda sender, **kw: seen.append(kw["new_status"]), weak=False,
                                           dispatch_uid="test-failed")
    try:
        ack(client, chip, message, -1, "evt_e")
    finally:
        signals.message_status_changed.disconnect(dispatch_uid="test-failed")
    failed = message_row(message.pk)
    assert failed.status == Message.Status.FAILED and "ERROR" in failed.error and failed.failed_at
    assert seen == ["FAILED"]


def test_acks_of_other_chips_and_unknown_messages_change_nothing(client, make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant)
    other = placed_chip(tenant, alias="Suporte")
    message = sent_message(chip)
    # The same WhatsApp id reported by another chip's session is not this message.
    ack(client, other, message, 3, "evt_other")
    assert message_row(message.pk).status == Message.Status.SENT
    # A message sent from the phone itself (unknown to WHAGO) is ignored.
    stranger = Message(waha_id=f"true_{CHAT}_FROMPHONE")
    assert ack(client, chip, stranger, 3, "evt_phone") == "stored"
    assert message_row(message.pk).status == Message.Status.SENT


def test_inbound_messages_are_stored_once_and_announced_for_opt_out(client, make_owner, receiver):
    _, tenant = make_owner()
    outgoing.set_webhook(tenant, receiver.url)
    chip = placed_chip(tenant)
    heard = []
    signals.message_received.connect(lambda sender, **kw: heard.append(kw["message"].body), weak=False,
                                     dispatch_uid="test-optout")
    payload = {"id": f"false_{CHAT}_AAA1", "timestamp": 1_730_000_000, "from": CHAT, "fromMe": False,
               "to": "5511999990001@c.us", "body": "SAIR", "hasMedia": False, "_data": {"notifyName": "Ana"}}
    try:
        post_event(client, chip, "message", payload, "evt_in1")
        post_event(client, chip, "message", payload, "evt_in1")  # WAHA's retry
        post_event(client, chip, "message", payload, "evt_in2")  # same message, another event id
        group = {**payload, "id": "false_123-456@g.us_X", "from": "123-456@g.us", "body": "no grupo"}
        post_event(client, chip, "message", group, "evt_group")
    finally:
        signals.message_received.disconnect(dispatch_uid="test-optout")
    with scopes_disabled():
        inbound = list(Message.objects.filter(chip=chip, direction=Message.Direction.IN))
    assert [(m.peer, m.body, m.peer_name, m.status) for m in inbound] == [
        ("+5511988887777", "SAIR", "Ana", Message.Status.RECEIVED)]
    assert inbound[0].sent_at.timestamp() == 1_730_000_000
    assert heard == ["SAIR"]
    with scopes_disabled():
        assert WebhookDelivery.objects.filter(tenant=tenant, event="message.received").count() == 1


def test_session_status_events_drive_the_chip_and_late_ones_are_ignored(client, make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=Chip.Status.SCAN_QR_CODE, phone="")
    me = {"id": "5511977776666@c.us", "pushName": "Loja"}

    post_event(client, chip, "session.status", {"name": chip.session_name, "status": "WORKING"}, "evt_w",
               timestamp=2_000, me=me)
    working = chip_row(chip.pk)
    assert (working.status, working.phone, working.push_name) == (Chip.Status.WORKING, "+5511977776666", "Loja")
    assert working.connected_at
    # An older event delivered late (webhooks travel in parallel) does not undo it.
    post_event(client, chip, "session.status", {"name": chip.session_name, "status": "SCAN_QR_CODE"}, "evt_old",
               timestamp=1_000)
    assert chip_row(chip.pk).status == Chip.Status.WORKING
    post_event(client, chip, "session.status", {"name": chip.session_name, "status": "FAILED"}, "evt_f",
               timestamp=3_000)
    failed = chip_row(chip.pk)
    assert failed.status == Chip.Status.FAILED and failed.last_error


def test_a_disconnected_chip_ignores_the_sessions_own_restarts(client, make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=Chip.Status.DISCONNECTED)
    for n, status in enumerate(["STOPPED", "STARTING", "SCAN_QR_CODE"]):
        post_event(client, chip, "session.status", {"name": chip.session_name, "status": status}, f"evt_{n}",
                   timestamp=5_000 + n)
    assert chip_row(chip.pk).status == Chip.Status.DISCONNECTED


def test_a_deleted_chip_stays_deleted_and_its_history_stays_true(client, make_owner):
    _, tenant = make_owner()
    chip = placed_chip(tenant, status=Chip.Status.STOPPED)
    message = sent_message(chip)
    with scopes_disabled():
        Chip.objects.filter(pk=chip.pk).update(deleted_at="2026-01-01T00:00:00Z")
    post_event(client, chip, "session.status", {"name": chip.session_name, "status": "WORKING"}, "evt_s",
               timestamp=9_000_000_000_000)
    assert chip_row(chip.pk).status == Chip.Status.STOPPED and chip_row(chip.pk).is_deleted
    assert lifecycle.chips_in_use(tenant) == 0
    # A late read receipt of a message it sent is still recorded: the message history stays true.
    ack(client, chip, message, 3, "evt_late")
    assert message_row(message.pk).status == Message.Status.READ
    # Inbound messages for the deleted chip are not stored.
    post_event(client, chip, "message", {"id": "false_x", "from": CHAT, "body": "Oi"}, "evt_in")
    with scopes_disabled():
        assert not Message.objects.filter(direction=Message.Direction.IN).exists()
