"""Sends that go wrong, on Docker with real workers and the simulator: the container down, a worker
killed mid-send, WAHA's answer lost; and the send path's own promises: outcomes recorded in batches,
an ack that overtakes its record, a run stopped half-way (chips/sending.py)."""
import threading
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from billing import limits
from chips import sending
from chips.models import Message
from waha.models import WebhookEvent

from .conftest import DOCKER, chip_row, message_row, post_event, sim_of, wait_message, wait_until, working_chip

pytestmark = DOCKER


def test_a_send_while_the_container_is_down_is_retried_then_failed_with_the_reason(worker, owner_client,
                                                                                    docker_client):
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    used_before = limits.remaining_quota(tenant)["day_used"]
    container = chip.waha_session.container
    docker_client.containers.get(container.runtime_id).stop(timeout=1)

    message, created = sending.send_message(tenant, chip, "(11) 98888-7777", text="Oi")
    assert created and limits.remaining_quota(tenant)["day_used"] == used_before + 1

    failed = wait_message(message.pk, Message.Status.FAILED)
    assert failed.attempts == 3  # CHIPS_SEND_MAX_ATTEMPTS of the worker fixture
    # The pace recorded in the database: between its creation and its failure the message waited
    # 0.3 s, then 0.6 s (the backoff doubles). A lower bound: a slow machine only adds to it.
    assert (failed.failed_at - failed.created_at).total_seconds() >= 0.3 + 0.6
    assert failed.failed_at and failed.waha_id == "" and failed.attempted_at is None and failed.lease_token is None
    assert "3" in failed.error and "127.0.0.1" not in failed.error and str(container.port) not in failed.error
    # Never sent, so its quota is given back.
    assert limits.remaining_quota(tenant)["day_used"] == used_before
    page = owner_client.get(reverse("message_detail", args=[message.pk])).content.decode()
    assert 'data-status="FAILED"' in page and failed.error.split(":")[0] in page

    # Back up: the next message goes out at once.
    docker_client.containers.get(container.runtime_id).start()
    wait_until(lambda: chip_row(chip.pk).waha_session.container and _answers(container), message="container back")
    wait_until(lambda: sim_of(chip).sessions().get(chip.session_name, {}).get("status") == "WORKING",
               message="session resumed")
    again, _ = sending.send_message(tenant, chip, "(11) 98888-7777", text="De novo")
    wait_message(again.pk, Message.Status.DELIVERED)
    assert [m["body"] for m in sim_of(chip).sent(chip.session_name)] == ["De novo"]


def _answers(container) -> bool:
    from waha import manager
    from waha.client import WahaError

    try:
        return manager.client_for(container, retries=0).ping()
    except WahaError:
        return False


def new_message(tenant, chip, body: str, peer: str = "+5511988880001") -> Message:
    with scopes_disabled():
        made = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT, peer=peer,
                                      body=body, status=Message.Status.QUEUED)
    return made


def settled(pk: int) -> Message | None:
    """Run the send sweep (what beat does every few seconds) until the message leaves QUEUED."""
    sending.sweep()
    message = message_row(pk)
    return message if message.status != Message.Status.QUEUED else None


SENT_OR_LATER = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ}


def test_a_worker_killed_after_handing_the_message_over_does_not_send_it_twice(start_worker, owner_client):
    tenant = owner_client.tenant
    first = start_worker(CHIPS_SEND_PAUSE_AFTER_HTTP="60", CHIPS_SEND_LEASE_SECONDS="3")
    chip = working_chip(tenant)
    sim = sim_of(chip)
    used_before = limits.remaining_quota(tenant)["day_used"]

    message, _ = sending.send_message(tenant, chip, "11988887777", text="Só uma vez")
    wait_until(lambda: len(sim.sent(chip.session_name)) == 1, message="WAHA accepted the message")
    in_flight = message_row(message.pk)
    assert in_flight.status == Message.Status.QUEUED and in_flight.lease_token and not in_flight.waha_id
    first.kill()  # SIGKILL while it sleeps between WAHA's answer and recording it

    # Its lease expires (3 s); the sweep settles it from evidence: WAHA's acks stored meanwhile, or
    # WAHA's own record of the chat. Not sent again.
    done = wait_until(lambda: settled(message.pk), 60, message="the interrupted send settled")
    assert done.status in SENT_OR_LATER and done.waha_id.startswith("true_5511988887777@c.us_")
    assert done.attempts == 1 and done.lease_token is None
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Só uma vez"]
    assert limits.remaining_quota(tenant)["day_used"] == used_before + 1  # it went out: counted

    # A new worker sends the next message normally.
    start_worker()
    following, _ = sending.send_message(tenant, chip, "11988887777", text="Próxima")
    wait_message(following.pk, Message.Status.DELIVERED)
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Só uma vez", "Próxima"]


def test_a_message_claimed_by_a_dead_sender_but_never_handed_over_is_sent_once(worker, owner_client):
    """The sender died between its claim and the call: WAHA's record of the chat has no such message,
    so it never reached WhatsApp; it is queued again and sent, once."""
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim = sim_of(chip)
    message = new_message(tenant, chip, "Nunca entregue", peer="+5511988887711")
    dead = sending.Sender()
    with scope(tenant=tenant):  # a send task's scope
        assert [m.pk for m in dead.claim([message.pk])] == [message.pk]  # ... and the sender is gone
    with scopes_disabled():
        Message.objects.filter(pk=message.pk).update(leased_until=timezone.now() - timedelta(seconds=1))

    with scope(tenant=tenant):  # as the sweep settles it
        assert sending.settle(message.pk) == sending.RETRY
    requeued = message_row(message.pk)
    assert requeued.status == Message.Status.QUEUED and requeued.lease_token is None
    assert requeued.attempts == 1 and requeued.error  # the attempt counts, and says why

    delivered = wait_message(message.pk, Message.Status.DELIVERED)  # the worker got the new task
    assert delivered.attempts == 2 and delivered.error == ""
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Nunca entregue"]


def test_a_lost_answer_is_settled_from_wahas_record(worker, owner_client):
    """WAHA sends the message but the connection closes before its answer: the sender records it in
    doubt (its lease expired at once), and the sweep finds it in WAHA's record of the chat."""
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim = sim_of(chip)
    sim.behaviour(fail_rate=1, fail_mode="lost_answer", fail_chat_ids=["5511988887722@c.us"],
                  device_ms=None, read_ms=None)

    message, _ = sending.send_message(tenant, chip, "11988887722", text="Resposta perdida")
    in_doubt = wait_until(lambda: (m := message_row(message.pk)).leased_until and m.error and m, 30,
                          message="the send recorded in doubt")
    assert in_doubt.status == Message.Status.QUEUED and not in_doubt.waha_id

    done = wait_until(lambda: settled(message.pk), 30, message="the send settled")
    recorded = [m for m in sim.sent(chip.session_name) if m["body"] == "Resposta perdida"]
    assert len(recorded) == 1 and done.waha_id == recorded[0]["id"]
    assert done.status in SENT_OR_LATER and done.attempts == 1 and done.error == ""


def test_a_slow_live_sender_is_not_taken_for_a_dead_one(start_worker, owner_client):
    """A second delivery of a message whose sender is still at work leaves it to that sender, and so
    does the sweep while the lease is live: the message ends DELIVERED, sent once."""
    tenant = owner_client.tenant
    start_worker(CHIPS_SEND_PAUSE_AFTER_HTTP="3")
    chip = working_chip(tenant)
    sim = sim_of(chip)

    message, _ = sending.send_message(tenant, chip, "11988886666", text="Devagar")
    wait_until(lambda: len(sim.sent(chip.session_name)) == 1, message="WAHA accepted the message")
    assert message_row(message.pk).status == Message.Status.QUEUED

    with scope(tenant=tenant):
        assert sending.deliver([message.pk]) == {}  # what a duplicated task does: nothing
    assert sending.sweep() == {"settled": 0, "requeued": 0}

    delivered = wait_message(message.pk, Message.Status.DELIVERED, timeout=30)
    assert delivered.attempts == 1 and delivered.waha_id and not delivered.error
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Devagar"]


def _message_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "chips_message"')]


def test_outcomes_are_recorded_in_batches(worker, owner_client, settings):
    """deliver() of 30 messages: one statement claims them all, one records the 30 outcomes (the batch
    is under CHIPS_SEND_RECORD_EVERY and the clock bound is set out of reach): not one per message."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.CHIPS_SEND_RECORD_EVERY, settings.CHIPS_SEND_RECORD_SECONDS = 50, 3600
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(device_ms=None, read_ms=None)
    messages = [new_message(tenant, chip, f"lote {n}", peer="+5511988880002") for n in range(30)]

    with scope(tenant=tenant), CaptureQueriesContext(connection) as queries:
        assert sending.deliver([m.pk for m in messages]) == {}
    assert len(_message_writes(queries.captured_queries)) == 2  # the claim and the record
    rows = [message_row(m.pk) for m in messages]
    assert {r.status for r in rows} == {Message.Status.SENT} and all(r.waha_id for r in rows)
    assert {r.lease_token for r in rows} == {None} and {r.attempts for r in rows} == {1}
    assert [m["body"] for m in sim_of(chip).sent(chip.session_name)] == [f"lote {n}" for n in range(30)]

    # With a record every 10 messages: 3 records (and the leases of the rest renewed with each).
    settings.CHIPS_SEND_RECORD_EVERY = 10
    more = [new_message(tenant, chip, f"mais {n}", peer="+5511988880002") for n in range(30)]
    with scope(tenant=tenant), CaptureQueriesContext(connection) as queries:
        sending.deliver([m.pk for m in more])
    writes = _message_writes(queries.captured_queries)
    assert len(writes) == 1 + 3 + 2  # claim, 3 records, 2 renewals (none after the last)


def test_an_ack_that_overtakes_its_record_is_applied(worker, owner_client):
    """Acks may arrive while the sender still holds the outcome in memory. Stored by the receiver
    either way, they are applied by the record (stored before it looked) or by the receiver's second
    look once its event committed (stored after): the message ends DELIVERED in both orders."""
    from django.db import connection, transaction

    from chips import inbox

    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(server_ms=None, device_ms=None, read_ms=None)  # the test sends the acks
    session = chip_row(chip.pk).waha_session

    def ack_of(message) -> dict:
        return {"id": message.waha_id, "to": message.peer.lstrip("+") + "@c.us", "fromMe": True, "ack": 2,
                "ackName": "DEVICE"}

    # 1. The ack is stored (committed) before the record: the record applies it.
    first = new_message(tenant, chip, "cedo", peer="+5511988880003")
    with scope(tenant=tenant), sending.Sender() as sender:
        [held] = sender.claim([first.pk])
        assert sender.send(held, session) == sending.SENT
        assert message_row(first.pk).waha_id == ""  # not on record yet
        answer = post_event(owner_client, chip, "message.ack", ack_of(held), f"evt_ack_{first.pk}")
        assert answer.status_code == 200 and message_row(first.pk).status == Message.Status.QUEUED
    assert message_row(first.pk).status == Message.Status.DELIVERED

    # 2. The receiver looks before the record commits, and its event commits after the record read
    #    the stored acks: its second look, on commit, applies it.
    second = new_message(tenant, chip, "no meio", peer="+5511988880004")
    looked, recorded, errors = threading.Event(), threading.Event(), []

    def receiver(message):
        try:
            with scopes_disabled(), transaction.atomic():
                WebhookEvent.objects.create(
                    tenant_id=tenant.pk, container_id=session.container_id, event_id=f"evt_ack_{message.pk}",
                    event="message.ack", session=session.remote_name,
                    payload={"event": "message.ack", "session": session.remote_name, "payload": ack_of(message)})
                assert inbox.apply_ack(tenant, chip.session_name, message.waha_id, 2, ack_of(message)) is None
                looked.set()
                assert recorded.wait(30)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    with scope(tenant=tenant), sending.Sender() as sender:
        [held] = sender.claim([second.pk])
        sender.send(held, session)
        thread = threading.Thread(target=receiver, args=(held,))
        thread.start()
        assert looked.wait(30)
        sender.record()
        assert message_row(second.pk).status == Message.Status.SENT  # the event is not committed yet
        recorded.set()
    thread.join(30)
    assert not errors and not thread.is_alive()
    assert message_row(second.pk).status == Message.Status.DELIVERED


def test_a_run_stopped_by_an_error_records_what_was_handed_over_and_gives_back_the_rest(worker, owner_client):
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(device_ms=None, read_ms=None)
    handed, untouched = (new_message(tenant, chip, body, peer="+5511988880005") for body in ("um", "dois"))
    session = chip_row(chip.pk).waha_session
    try:
        with scope(tenant=tenant), sending.Sender() as sender:
            first, _second = sender.claim([handed.pk, untouched.pk])
            sender.send(first, session)
            raise RuntimeError("stopped between two sends")
    except RuntimeError:
        pass
    sent = message_row(handed.pk)
    assert sent.status == Message.Status.SENT and sent.waha_id and sent.lease_token is None
    back = message_row(untouched.pk)
    assert back.status == Message.Status.QUEUED and back.lease_token is None and back.attempted_at is None
    assert back.attempts == 0
    assert [m["body"] for m in sim_of(chip).sent(chip.session_name)] == ["um"]
