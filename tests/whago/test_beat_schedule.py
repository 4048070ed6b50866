"""The periodic tasks are declared in CELERY_BEAT_SCHEDULE; a real `celery beat` writes them into
django-celery-beat's tables (its DatabaseScheduler), which the migrations no longer do."""
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests import waiting
from tests.conftest import ROOT, worker_env

# Celery's own cleanup of stored results, added by the scheduler itself (crontab, 04:00).
CELERY_DEFAULT = {"celery.backend_cleanup"}


def schedule_in_db() -> dict:
    return {
        task.name: (task.task, timedelta(**{task.interval.period: task.interval.every}).total_seconds())
        for task in PeriodicTask.objects.filter(interval__isnull=False, enabled=True).select_related("interval")
    }


def expected_schedule() -> dict:
    return {name: (entry["task"], float(entry["schedule"])) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}


@pytest.fixture
def run_beat(tmp_path):
    """Start a real beat process on the test database; returns once its scheduler has ticked."""
    procs = []

    def start():
        log = tmp_path / "beat.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "whago", "beat", "--loglevel=DEBUG",
             f"--pidfile={tmp_path / 'beat.pid'}"],
            cwd=ROOT, env=worker_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        procs.append(proc)
        give_up = waiting.deadline()
        # "Waking up" is logged after the first tick, so after setup_schedule wrote the entries.
        while "beat: Waking up" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > give_up:
                pytest.fail(f"celery beat did not tick:\n{log.read_text()}")
            time.sleep(0.2)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if procs:  # what beat sent must not reach a later test's worker
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def test_every_declared_task_exists():
    from whago.celery import app

    app.loader.import_default_modules()
    missing = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] not in app.tasks]
    assert missing == []
    # The sweeps and the pruning of every append-only table are scheduled.
    assert {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} >= {
        "waha.tasks.health_sweep", "waha.tasks.stats_sweep", "waha.tasks.alert_sweep", "waha.tasks.cleanup_orphans",
        "waha.tasks.prune_webhook_events", "chips.tasks.sweep_sends", "chips.tasks.kick_campaigns",
        "chips.tasks.provision_sweep", "chips.tasks.prune_webhook_deliveries", "proxies.tasks.check_proxies",
        "billing.tasks.expire_subscriptions", "whago.tasks.prune_audit_log",
    }


@pytest.mark.django_db
def test_migrations_create_no_periodic_task():
    assert list(PeriodicTask.objects.values_list("name", flat=True)) == []


@pytest.mark.django_db(transaction=True)
def test_beat_writes_exactly_the_declared_schedule(run_beat):
    # A database migrated before the schedule moved to settings: the rows the migrations wrote
    # (same names) are brought in line, not duplicated; an operator's disabled entry stays disabled.
    stale, _ = IntervalSchedule.objects.get_or_create(every=999, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="chips: campaign kick", task="chips.tasks.kick_campaigns", interval=stale)
    PeriodicTask.objects.create(
        name="waha: orphan cleanup", task="waha.tasks.cleanup_orphans", interval=stale, enabled=False
    )

    run_beat()

    expected = expected_schedule()
    expected.pop("waha: orphan cleanup")
    assert schedule_in_db() == expected
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert names == set(settings.CELERY_BEAT_SCHEDULE) | CELERY_DEFAULT
    orphans = PeriodicTask.objects.select_related("interval").get(name="waha: orphan cleanup")
    assert (orphans.enabled, orphans.interval.every) == (False, 3600)
    assert PeriodicTask.objects.filter(task="chips.tasks.kick_campaigns").count() == 1
