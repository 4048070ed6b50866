"""Sends that go wrong, on Docker with real workers: the container down, a worker killed mid-send."""
import time

from django.urls import reverse

from billing import limits
from chips import services
from chips.models import Message

from .conftest import DOCKER, chip_row, message_row, sim_of, wait_message, wait_until, working_chip

pytestmark = DOCKER


def test_a_send_while_the_container_is_down_is_retried_then_failed_with_the_reason(worker, owner_client,
                                                                                    docker_client):
    tenant = owner_client.tenant
    chip = working_chip(tenant)
    used_before = limits.remaining_quota(tenant)["day_used"]
    container = chip.waha_session.container
    docker_client.containers.get(container.runtime_id).stop(timeout=1)

    started = time.monotonic()
    message, created = services.send_message(tenant, chip, "(11) 98888-7777", text="Oi")
    assert created and limits.remaining_quota(tenant)["day_used"] == used_before + 1

    failed = wait_message(message.pk, Message.Status.FAILED, timeout=30)
    assert failed.attempts == 3  # CHIPS_SEND_MAX_ATTEMPTS of the worker fixture
    assert time.monotonic() - started >= 0.3 + 0.6  # waited between attempts, doubling
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
    failed = wait_message(message.pk, Message.Status.FAILED, timeout=30)
    assert failed.attempts == 1 and failed.waha_id == ""
    assert failed.error  # says it may have been delivered and was not sent again
    time.sleep(1)
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
