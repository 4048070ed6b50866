"""The worker's database connections killed again and again while it sends batches of messages.

A real worker (PGAPPNAME names its connections) sends 240 messages queued as the batch API queues
them (tasks of 25) through two chips of a simulator that acks each message. While it works, every
connection of the worker is terminated (pg_terminate_backend) at short intervals: a claim, a record
or a lease renewal fails half-way, the task errors, and its messages are left leased by nobody.
This process runs the send sweep as beat would. Counted in the simulator's own records: messages
lost (0), sent twice (0); and none is failed as "may have been delivered": WAHA's stored acks or its
record of the chat settle every interrupted send.
"""
import pytest
from django.db import connection
from django_scopes import scopes_disabled

from chips import sending
from chips.models import Chip, Message
from tests.chips.campaignkit import sim_chips  # noqa: F401 - fixture
from tests.chips.conftest import set_plan, wait_until
from tests.conftest import Worker

pytestmark = [pytest.mark.django_db(transaction=True)]

MESSAGES = 240
TEXT = "Aviso de entrega"
WORKER_APP = "whago-fault-worker"
DONE = {Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ, Message.Status.FAILED}


def kill_worker_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE application_name = %s AND pid <> pg_backend_pid()", [WORKER_APP])
        return cursor.fetchone()[0]


def statuses(ids) -> dict[str, int]:
    with scopes_disabled():
        rows = list(Message.objects.filter(pk__in=ids).values_list("status", "error"))
    counts: dict[str, int] = {}
    for status, _error in rows:
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_killed_database_connections_mid_batch_lose_nothing_and_send_nothing_twice(
        sim_chips, make_owner, settings, tmp_path):  # noqa: F811
    _user, tenant = make_owner()
    set_plan(tenant, "ENTERPRISE")
    settings.CHIPS_SEND_REQUEUE_SECONDS = 3  # the sweep this test runs gives lost tasks a new one after 3 s
    made = sim_chips.make(tenant, ["5511999990001", "5511999990002"])
    with scopes_disabled():
        chips = list(Chip.objects.filter(pk__in=[c.pk for c in made]).order_by("pk"))
    worker = Worker(tmp_path / "worker.log", {
        "PGAPPNAME": WORKER_APP, "CHIPS_SEND_LEASE_SECONDS": "3", "CHIPS_SEND_RECORD_SECONDS": "0.2",
        "CHIPS_SEND_BACKOFF_SECONDS": "0.3", "CHIPS_SEND_PAUSE_AFTER_HTTP": "0.01"}, concurrency=4)
    counts = {"connections killed": 0, "kill rounds": 0, "sweeps": 0, "settled by the sweep": 0,
              "requeued by the sweep": 0}
    try:
        items = [{"chip": chips[n % 2].pk, "to": f"+5521966{n:06d}", "text": f"{TEXT} {n}"} for n in range(MESSAGES)]
        ids = []
        for start in range(0, MESSAGES, 60):
            ids += [m.pk for m, _created in sending.send_messages(tenant, items[start:start + 60], source="api")]

        def settled() -> bool:
            # Kill the worker's connections for the first rounds, while it is sending; sweep as beat does.
            if counts["kill rounds"] < 12:
                counts["kill rounds"] += 1
                counts["connections killed"] += kill_worker_connections()
            swept = sending.sweep()
            counts["sweeps"] += 1
            counts["settled by the sweep"] += swept["settled"]
            counts["requeued by the sweep"] += swept["requeued"]
            return sum(n for status, n in statuses(ids).items() if status in DONE) == MESSAGES

        first_sends = lambda: len(sim_chips.sends_by_chat(chips, TEXT)) >= 10  # noqa: E731
        wait_until(first_sends, 60, interval=0.05, message="the worker to start sending")
        wait_until(settled, 240, interval=0.4, message="every message settled")
        assert worker.proc.poll() is None, worker.log()[-4000:]
    finally:
        worker.stop()

    sends = sim_chips.sends_by_chat(chips, TEXT)
    expected = {f"5521966{n:06d}@c.us" for n in range(MESSAGES)}
    by_status = statuses(ids)
    with scopes_disabled():
        in_doubt = Message.objects.filter(pk__in=ids, error__icontains="pode ter chegado").count()
    report = {**counts, "messages lost": len(expected - set(sends)),
              "messages sent twice": sum(1 for n in sends.values() if n > 1), "by status": by_status,
              "failed as may have been delivered": in_doubt}
    print("\ndatabase connections killed mid-batch:", report)
    assert counts["connections killed"] > 0, report  # the fault happened
    assert report["messages lost"] == report["messages sent twice"] == 0, report
    assert set(sends) == expected
    assert by_status.get(Message.Status.FAILED, 0) == 0 and in_doubt == 0, report
    # And nothing stays leased or queued.
    with scopes_disabled():
        assert not Message.objects.filter(pk__in=ids, lease_token__isnull=False).exists()
