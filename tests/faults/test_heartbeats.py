"""Worker and beat heartbeats: recorded by the real processes; when one role falls silent, /status/
and the dashboard say so and the other process e-mails the operators, once per silence."""
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from tests.chips.conftest import wait_until
from tests.conftest import Worker
from whago import heartbeats
from whago.models import ProcessHeartbeat

from .brokerkit import Beat, fault_broker  # noqa: F401 - fixture

Role = ProcessHeartbeat.Role
FAST = {"HEARTBEAT_SECONDS": "1", "HEARTBEAT_STALE_SECONDS": "3", "OPERATOR_EMAILS": "plantao@whago.test"}


def row(role: str, name: str | None = None) -> ProcessHeartbeat | None:
    rows = ProcessHeartbeat.objects.filter(role=role).order_by("-seen_at")
    return (rows.filter(name=name) if name else rows).first()


def line(page: str, role: str) -> str:
    found = re.search(rf'<li id="heartbeat-{role}" class="(\w+)">\s*(.*?)\s*</li>', page, re.S)
    assert found, page
    return f"{found.group(1)}: {found.group(2)}"


@pytest.mark.django_db
def test_a_silent_role_is_reported_once_per_silence_and_again_after_it_came_back(settings):
    settings.OPERATOR_EMAILS = ["plantao@whago.test"]
    settings.HEARTBEAT_STALE_SECONDS = 60
    heartbeats.started(Role.WORKER, "celery@maquina-1")
    heartbeats.started(Role.BEAT, "beat@maquina-1")
    assert heartbeats.report_silences() == [] and not any(s.stale for s in heartbeats.states())

    ProcessHeartbeat.objects.filter(role=Role.WORKER).update(seen_at=timezone.now() - timedelta(seconds=90))
    assert heartbeats.report_silences(watcher=Role.WORKER) == []  # a process does not report its own role
    assert heartbeats.report_silences(watcher=Role.BEAT) == [Role.WORKER]
    assert heartbeats.report_silences(watcher=Role.BEAT) == []  # once per silence
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["plantao@whago.test"]
    assert "celery@maquina-1" in mail.outbox[0].body and "90" in mail.outbox[0].subject

    heartbeats.beat(Role.WORKER, "celery@maquina-1")  # it came back
    assert not any(s.stale for s in heartbeats.states())
    ProcessHeartbeat.objects.filter(role=Role.WORKER).update(seen_at=timezone.now() - timedelta(seconds=61))
    assert heartbeats.report_silences(watcher=Role.BEAT) == [Role.WORKER]
    assert len(mail.outbox) == 2

    # A role never seen is shown as silent, but not e-mailed (no process ever ran to go missing).
    ProcessHeartbeat.objects.filter(role=Role.BEAT).delete()
    [worker, beat] = heartbeats.states()
    assert beat.stale and beat.last_seen is None and heartbeats.report_silences() == []


@pytest.mark.django_db(transaction=True)
def test_real_worker_and_beat_beat_and_each_reports_the_other_missing(
        fault_broker, client, operator, settings, tmp_path):  # noqa: F811
    settings.HEARTBEAT_STALE_SECONDS = 3
    client.force_login(operator)
    worker = Worker(tmp_path / "worker.log", fault_broker.worker_env(**FAST))
    # Beat schedules into a database of the Redis server that no worker reads: only its heartbeat matters here.
    beat = Beat(tmp_path / "beat.log", fault_broker.worker_env(**FAST, CELERY_BROKER_URL=fault_broker.server.url(2)))
    second = None
    try:
        wait_until(lambda: row(Role.WORKER) and row(Role.BEAT), 20, message="both heartbeats")
        page = client.get(reverse("status"))
        text = page.content.decode()
        assert page.status_code == 200, text
        assert line(text, "worker").startswith("ok:") and line(text, "beat").startswith("ok:")
        dashboard = client.get("/admin/dashboard/").content.decode()
        assert 'id="card-processes"' in dashboard and "errornote" not in dashboard

        # The worker stops: within the stale bound the beat process notices and e-mails the operators.
        worker_name = row(Role.WORKER).name
        worker.stop()
        wait_until(lambda: row(Role.WORKER, worker_name).silence_reported_at, 30,
                   message="the beat process to report the silent worker")
        assert "plantao@whago.test" in beat.log() and worker_name in beat.log()
        page = client.get(reverse("status"))
        assert page.status_code == 503
        assert line(page.content.decode(), "worker").startswith("error:")
        assert line(page.content.decode(), "beat").startswith("ok:")
        assert 'id="process-worker" class="errornote"' in client.get("/admin/dashboard/").content.decode()

        # A worker again: the page is green; then beat stops and the worker reports it.
        second = Worker(tmp_path / "worker2.log", fault_broker.worker_env(**FAST))
        wait_until(lambda: not heartbeats.states()[0].stale, 20, message="the new worker's heartbeat")
        assert client.get(reverse("status")).status_code == 200
        beat_name = row(Role.BEAT).name
        beat.stop()
        wait_until(lambda: row(Role.BEAT, beat_name).silence_reported_at, 30,
                   message="the worker to report the silent beat")
        reported_at = row(Role.BEAT, beat_name).silence_reported_at
        # Once per silence: two more heartbeats of the worker later, still one report.
        seen = row(Role.WORKER, row(Role.WORKER).name).seen_at
        wait_until(lambda: row(Role.WORKER).seen_at > seen + timedelta(seconds=1.5), 20,
                   message="two more worker heartbeats")
        assert row(Role.BEAT, beat_name).silence_reported_at == reported_at
        assert second.log().count(beat_name) == 1, second.log()[-3000:]
        page = client.get(reverse("status"))
        assert page.status_code == 503 and line(page.content.decode(), "beat").startswith("error:")
        print("\nheartbeats:", {"worker silence reported": True, "beat silence reported": True,
                                "reports of the beat's silence": second.log().count(beat_name)})
    finally:
        for process in (worker, beat, second):
            if process is not None:
                process.stop()
