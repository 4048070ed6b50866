"""waha.tasks run by a real Celery worker; the stats and alert sweeps.

Their beat schedule: tests/whago/test_beat_schedule.py."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_scopes import scopes_disabled

from waha import manager, tasks
from waha.models import AlertState, ContainerAlert, StatsSample, WahaContainer, WahaSession

from .conftest import waha_info, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waha_worker(waha_live, monkeypatch, request):
    """A real worker whose containers post their webhooks to the live app."""
    monkeypatch.setenv("WAHA_WEBHOOK_URL", settings.WAHA_WEBHOOK_URL)
    for name in ("WAHA_MEMORY_LIMIT", "WAHA_CPU_LIMIT"):
        monkeypatch.setenv(name, str(getattr(settings, name)))
    return request.getfixturevalue("celery_worker")


def test_the_workers_health_sweep_revives_a_killed_container(waha_worker, make_tenant, docker_client):
    tenant = make_tenant()

    manager.create_session(tenant, "chip_5", proxy={"server": "127.0.0.1:1080"})

    def provisioned():
        with scopes_disabled():
            return WahaSession.objects.filter(tenant=tenant, name="chip_5", status="SCAN_QR_CODE").first()

    session = wait_for(provisioned, timeout=120, message="chip_5 waiting for its QR code scan")
    with scopes_disabled():
        container = WahaContainer.objects.get(tenant=tenant)
    assert waha_info(session)["config"]["proxy"] == {"server": "127.0.0.1:1080"}
    assert docker_client.containers.get(container.runtime_id).labels["whago.tenant"] == str(tenant.pk)

    docker_client.containers.get(container.runtime_id).kill()
    tasks.health_sweep.delay()

    wait_for(
        lambda: docker_client.containers.get(container.runtime_id).status == "running",
        timeout=60,
        message="the worker's health sweep to restart the container",
    )
    wait_for(lambda: waha_info(session)["status"] == "SCAN_QR_CODE", message="the session back")


def test_stats_sweep_and_alert_rules(waha_docker, make_tenant, docker_client, simulator_image):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)

    assert manager.stats_sweep() == {"sampled": 1, "failed": 0}
    with scopes_disabled():
        sample = StatsSample.objects.get(container=container)
        container.refresh_from_db()
    assert sample.memory_bytes > 1024 * 1024
    assert 0 < sample.memory_percent < 100
    assert sample.cpu_percent >= 0
    assert container.last_memory_bytes == sample.memory_bytes
    assert container.last_stats_at is not None

    def open_rules(subject=container.name):
        return sorted(
            ContainerAlert.objects.filter(subject=subject).exclude(state=AlertState.RESOLVED).values_list(
                "rule", flat=True
            )
        )

    # Limits so low that the container is above them: alerts open, once however many sweeps.
    waha_docker.WAHA_ALERT_CPU_PERCENT = -1
    waha_docker.WAHA_ALERT_MEMORY_PERCENT = 0.001
    manager.alert_sweep(orphans=[])
    manager.alert_sweep(orphans=[])
    assert open_rules() == ["cpu", "memory"]
    assert ContainerAlert.objects.filter(subject=container.name).count() == 2

    # Acknowledged is still unresolved: no second alert for the same rule.
    ContainerAlert.objects.filter(subject=container.name, rule="cpu").update(state=AlertState.ACKNOWLEDGED)
    manager.alert_sweep(orphans=[])
    assert ContainerAlert.objects.filter(subject=container.name, rule="cpu").count() == 1

    waha_docker.WAHA_ALERT_CPU_PERCENT = 80
    waha_docker.WAHA_ALERT_MEMORY_PERCENT = 90
    manager.alert_sweep(orphans=[])
    assert open_rules() == []

    # Stopped for more than an hour.
    manager.stop_container(container)
    manager.alert_sweep(orphans=[])
    assert open_rules() == []
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(down_since=timezone.now() - timedelta(minutes=61))
    manager.alert_sweep(orphans=[])
    assert open_rules() == ["stopped"]
    manager.start_container(container)
    manager.alert_sweep(orphans=[])
    assert open_rules() == []

    # An orphan: alert while it exists, resolved once the cleanup removed it.
    orphan = docker_client.containers.create(
        simulator_image,
        name=f"whago-{manager.instance_slug()}-waha-orphan-alert",
        labels={"whago.service": "waha", "whago.instance": settings.WHAGO_INSTANCE},
    )
    manager.alert_sweep()
    assert open_rules(orphan.name) == []  # too young: it may be a container being created
    manager.alert_sweep(orphans=manager.find_orphans(grace=timedelta(0)))
    assert open_rules(orphan.name) == ["orphan"]
    assert manager.cleanup_orphans(grace=timedelta(0))["removed"] == [orphan.name]
    manager.alert_sweep()
    assert open_rules(orphan.name) == []


def test_alert_e_mail_goes_to_the_operators(waha_docker, make_tenant, mailoutbox):
    waha_docker.OPERATOR_EMAILS = ["ops@whago.test"]
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    manager.stats_sweep()
    waha_docker.WAHA_ALERT_MEMORY_PERCENT = 0.001
    manager.alert_sweep(orphans=[])
    manager.alert_sweep(orphans=[])
    [mail] = [m for m in mailoutbox if container.name in m.subject]
    assert mail.to == ["ops@whago.test"]
    assert "memory" in mail.body
