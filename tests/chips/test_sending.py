"""Sends that go wrong, on Docker with real workers: the container down, a worker killed mid-send."""
import time

from django.urls import reverse
from django_scopes import scopes_disabled

from billing import limits
from chips import services
from chips.models import Message
from waha.models import WebhookEvent

from .conftest import DOCKER, chip_row, message_row, sim_of, wait_message, wait_until, working_chip

pytestmark = DOCKER


def test_a_send_while_the_container_is_down_is_retried_then_failed_with_the_reason(worker, owner_client,
                                                                                    docker_client):
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    used_before = limits.remaining_quota(tenant)["day_used"]
    container = chip.waha_session.container
    docker_client.containers.get(container.runtime_id).stop(timeout=1)

    message, created = services.send_message(tenant, chip, "(11) 98888-7777", text="Oi")
    assert created and limits.remaining_quota(tenant)["day_used"] == used_before + 1

    failed = wait_message(message.pk, Message.Status.FAILED)
    assert failed.attempts == 3  # CHIPS_SEND_MAX_ATTEMPTS of the worker fixture
    # The pace recorded in the database: between its creation and its failure the message waited
    # 0.3 s, then 0.6 s (the backoff doubles). A lower bound: a slow machine only adds to it.
    assert (failed.failed_at - failed.created_at).total_seconds() >= 0.3 + 0.6
    assert failed.failed_at and failed.waha_id == "" and failed.attempted_at is None
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
    again, _ = services.send_message(tenant, chip, "(11) 98888-7777", text="De novo")
    wait_message(again.pk, Message.Status.DELIVERED)
    assert [m["body"] for m in sim_of(chip).sent(chip.session_name)] == ["De novo"]


def _answers(container) -> bool:
    from waha import manager
    from waha.client import WahaError

    try:
        return manager.client_for(container, retries=0).ping()
    except WahaError:
        return False


def test_a_worker_killed_right_after_sending_does_not_send_twice(start_worker, owner_client):
    tenant = owner_client.tenant
    first = start_worker(CHIPS_SEND_PAUSE_AFTER_HTTP="60")
    chip = working_chip(tenant)
    sim = sim_of(chip)
    used_before = limits.remaining_quota(tenant)["day_used"]

    message, _ = services.send_message(tenant, chip, "11988887777", text="Só uma vez")
    wait_until(lambda: len(sim.sent(chip.session_name)) == 1, message="WAHA accepted the message")
    in_flight = message_row(message.pk)
    assert in_flight.status == Message.Status.QUEUED and in_flight.attempted_at and not in_flight.waha_id
    first.kill()  # SIGKILL while it sleeps between WAHA's answer and recording it

    # Another worker gets the unacknowledged task back from the broker.
    start_worker(CELERY_VISIBILITY_TIMEOUT="1", CELERY_RESTORE_INTERVAL="1")
    # Not sent again; and WAHA's own acks (stored while nobody could match them) settle it as
    # delivered, whether they arrive before the redelivered task looks at it or after.
    settled = wait_message(message.pk, Message.Status.DELIVERED, timeout=60)
    assert settled.attempts == 1 and settled.waha_id.startswith("true_5511988887777@c.us_")
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Só uma vez"]
    # It may have gone out: its quota stays counted.
    assert limits.remaining_quota(tenant)["day_used"] == used_before + 1

    # The new worker sends the next message normally.
    following, _ = services.send_message(tenant, chip, "11988887777", text="Próxima")
    wait_message(following.pk, Message.Status.DELIVERED)
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Só uma vez", "Próxima"]


def test_a_slow_live_sender_is_not_taken_for_a_dead_one(start_worker, owner_client):
    """A second delivery of a message whose sender is still at work (past the grace period) leaves it
    to that sender: the message ends SENT, then DELIVERED, never FAILED as interrupted."""
    tenant = owner_client.tenant
    start_worker(CHIPS_SEND_PAUSE_AFTER_HTTP=str(services.INTERRUPTED_GRACE + 3))
    chip = working_chip(tenant)
    sim = sim_of(chip)

    message, _ = services.send_message(tenant, chip, "11988886666", text="Devagar")
    wait_until(lambda: len(sim.sent(chip.session_name)) == 1, message="WAHA accepted the message")
    time.sleep(services.INTERRUPTED_GRACE + 0.5)  # the claim is older than the grace; its sender still sleeps
    assert message_row(message.pk).status == Message.Status.QUEUED

    assert services.deliver(message.pk) is None  # what a duplicated task would do: nothing
    assert message_row(message.pk).status == Message.Status.QUEUED

    delivered = wait_message(message.pk, Message.Status.DELIVERED, timeout=20)
    assert delivered.attempts == 1 and delivered.waha_id and not delivered.error
    assert [m["body"] for m in sim.sent(chip.session_name)] == ["Devagar"]


def _sender_locks_held() -> list[int]:
    """The message ids whose sender lock this connection holds."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                       "AND granted ORDER BY objid")
        return [row[0] for row in cursor.fetchall()]


def test_a_run_of_sends_records_each_outcome_with_the_next_claim_and_holds_each_lock_until_then(
        worker, owner_client):
    """services.Sender: one statement records the last message's SENT and claims the next; a
    message's lock is held until its outcome is committed, also when the next claim fails or the
    call fails; nothing is held once the run ends (deliver_many, campaign lanes)."""
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    with scopes_disabled():
        first, taken, last, refused = (
            Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                   peer="+5511988880001", body=body, status=Message.Status.QUEUED)
            for body in ("um", "dois", "três", "quatro")
        )
        Message.objects.filter(pk=taken.pk).update(status=Message.Status.SENT, waha_id="sent-elsewhere")
        first, last, refused = (Message.objects.select_related("tenant", "chip").get(pk=m.pk)
                                for m in (first, last, refused))
    session = chip_row(chip.pk).waha_session

    with services.Sender() as sender:
        claim = sender.claim(first.pk)
        assert _sender_locks_held() == [first.pk]
        assert sender.attempt(first, session, claim) is None
        in_flight = message_row(first.pk)  # handed to WAHA, its record waits for the next claim
        assert in_flight.status == Message.Status.QUEUED and in_flight.attempted_at and not in_flight.waha_id
        assert _sender_locks_held() == [first.pk]

        assert sender.claim(taken.pk) is None
        recorded = message_row(first.pk)
        assert recorded.status in {Message.Status.SENT, Message.Status.DELIVERED} and recorded.waha_id
        assert _sender_locks_held() == [first.pk]  # its record was just committed: given up next

        claim = sender.claim(last.pk)
        assert _sender_locks_held() == [last.pk]
        assert sender.attempt(last, session, claim) is None

        claim = sender.claim(refused.pk)
        assert _sender_locks_held() == [last.pk, refused.pk]
        assert message_row(last.pk).status in {Message.Status.SENT, Message.Status.DELIVERED}
        # A session WAHA does not know: refused, on record at once (to be retried), and its lock kept
        # until the next statement.
        assert sender.attempt(refused, None, claim) is not None
        assert message_row(refused.pk).attempted_at is None
        assert _sender_locks_held() == [last.pk, refused.pk]
    assert _sender_locks_held() == []

    with scopes_disabled():
        again = [Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                        peer="+5511988880002", body=f"lote {n}", status=Message.Status.QUEUED)
                 for n in range(3)]
    assert services.deliver_many([m.pk for m in again]) == {}
    assert _sender_locks_held() == []
    assert {message_row(m.pk).status for m in again} <= {Message.Status.SENT, Message.Status.DELIVERED}
    assert [m["body"] for m in sim_of(chip).sent(chip.session_name)] == ["um", "três", "lote 0", "lote 1", "lote 2"]


def _advisory_locks(message_ids, granted: bool) -> int:
    """Sender locks on these messages held (granted) or waited for, by any connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = ANY(%s) "
                       "AND granted = %s", [list(message_ids), granted])
        return cursor.fetchone()[0]


def test_an_early_ack_waits_for_the_record_that_comes_with_the_next_claim(worker, owner_client):
    """An ack that arrives before its message's SENT is on record (a Sender records it with the next
    claim) waits for it, then applies: the message ends DELIVERED, not lost as unknown."""
    import threading

    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(server_ms=None, device_ms=None)  # this test sends the ack itself
    with scopes_disabled():
        message = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                         peer="+5511988880003", body="cedo", status=Message.Status.QUEUED)
        message = Message.objects.select_related("tenant", "chip").get(pk=message.pk)
    session = chip_row(chip.pk).waha_session
    applied = []

    with services.Sender() as sender:
        claim = sender.claim(message.pk)
        sender.attempt(message, session, claim)
        assert message_row(message.pk).waha_id == ""  # not on record yet
        ack = {"id": message.waha_id, "to": "5511988880003@c.us", "fromMe": True, "ack": 2, "ackName": "DEVICE"}

        def webhook():
            from django.db import connection, transaction

            try:
                with transaction.atomic():
                    applied.append(services.apply_ack(tenant, chip.session_name, message.waha_id, 2, ack))
            finally:
                connection.close()

        thread = threading.Thread(target=webhook)
        thread.start()
        wait_until(lambda: _advisory_locks([message.pk], granted=False) == 1, message="the ack waits on the lock")
        assert not applied
    thread.join(10)
    assert not thread.is_alive() and applied and applied[0] is not None
    assert message_row(message.pk).status == Message.Status.DELIVERED


def test_an_early_ack_waits_a_bounded_time_then_waha_is_asked_to_retry(worker, owner_client, settings):
    """A sender slower than CHIPS_ACK_WAIT_SECONDS: the ack's webhook gets a 503, nothing is stored;
    WAHA's retry after the record applies it."""
    import json
    import threading

    from django.test import Client

    from waha.webhooks import sign

    settings.CHIPS_ACK_WAIT_SECONDS = 0.3
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(server_ms=None, device_ms=None)
    with scopes_disabled():
        message = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                         peer="+5511988880005", body="lento", status=Message.Status.QUEUED)
        message = Message.objects.select_related("tenant", "chip").get(pk=message.pk)
    container = chip_row(chip.pk).waha_session.container
    answers = []

    def deliver_ack():
        from django.db import connection

        body = json.dumps({
            "id": f"evt_ack_{message.pk}", "timestamp": 1730000000123, "event": "message.ack",
            "session": chip.session_name, "payload": {
                "id": message.waha_id, "from": "5511999990001@c.us", "to": "5511988880005@c.us", "fromMe": True,
                "ack": 2, "ackName": "DEVICE"}}).encode()
        try:
            answers.append(Client().post(
                f"/api/v1/webhooks/waha/{container.pk}", data=body, content_type="application/json",
                HTTP_X_WEBHOOK_HMAC=sign(container.webhook_key, body), HTTP_X_WEBHOOK_HMAC_ALGORITHM="sha512"))
        finally:
            connection.close()

    with services.Sender() as sender:
        sender.attempt(message, chip_row(chip.pk).waha_session, sender.claim(message.pk))
        thread = threading.Thread(target=deliver_ack)
        thread.start()
        thread.join(10)  # the sender holds the lock all along: the webhook gives up
        assert answers and answers[0].status_code == 503
        assert message_row(message.pk).status == Message.Status.QUEUED
    with scopes_disabled():
        assert not WebhookEvent.objects.filter(event_id=f"evt_ack_{message.pk}").exists()

    thread = threading.Thread(target=deliver_ack)  # WAHA's retry
    thread.start()
    thread.join(10)
    assert answers[1].status_code == 200
    assert message_row(message.pk).status == Message.Status.DELIVERED


def test_a_run_stopped_by_an_error_gives_back_its_claim_and_holds_no_lock(worker, owner_client):
    """Between a claim and the call to WAHA an error stops the run: the claim is given back (the
    message was never sent) and no lock is left. A statement that fails leaves no lock either:
    the connection goes, and the message handed to WAHA but not on record counts as interrupted."""
    from django.db import IntegrityError

    tenant = owner_client.tenant
    chip = working_chip(tenant)
    sim_of(chip).behaviour(server_ms=None, device_ms=None)

    def new_message(body):
        with scopes_disabled():
            made = Message.objects.create(tenant=tenant, chip=chip, direction=Message.Direction.OUT,
                                          peer="+5511988880004", body=body, status=Message.Status.QUEUED)
            return Message.objects.select_related("tenant", "chip").get(pk=made.pk)

    untouched = new_message("nunca")
    try:
        with services.Sender() as sender:
            assert sender.claim(untouched.pk)
            raise RuntimeError("stopped between the claim and the call")
    except RuntimeError:
        pass
    row = message_row(untouched.pk)
    assert row.status == Message.Status.QUEUED and row.attempted_at is None
    assert _advisory_locks([untouched.pk], granted=True) == 0

    sent, other, following = new_message("um"), new_message("outro"), new_message("depois")
    session = chip_row(chip.pk).waha_session
    try:
        with services.Sender() as sender:
            sender.attempt(sent, session, sender.claim(sent.pk))
            # Its SENT record will break a unique constraint: the statement carrying it fails.
            with scopes_disabled():
                Message.objects.filter(pk=other.pk).update(waha_id=sent.waha_id)
            sender.claim(following.pk)
    except IntegrityError:
        pass
    else:
        raise AssertionError("the record should have failed")
    assert _advisory_locks([sent.pk, following.pk], granted=True) == 0
    row = message_row(sent.pk)
    assert row.status == Message.Status.QUEUED and row.attempted_at and not row.waha_id  # to be judged interrupted
    assert message_row(following.pk).attempted_at is None  # rolled back with the statement
    assert services.deliver(following.pk) is None
    assert message_row(following.pk).status in {Message.Status.SENT, Message.Status.DELIVERED}
