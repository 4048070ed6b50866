"""A WAHA container that loses its data, or stops answering: WHAGO compares what WAHA reports with
what it believes (the health sweep), instead of trusting its own rows. The tenant sees it on the
chip, the operators get an alert, and nothing needs a person to recover what can recover."""
import docker
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip
from tests.chips.conftest import DOCKER, chip_row, wait_chip, working_chip
from waha import manager
from waha.models import AlertRule, ContainerAlert

pytestmark = DOCKER


@pytest.fixture
def engine():
    client = docker.from_env()
    yield client
    client.close()


def alerts(rule) -> list[ContainerAlert]:
    return list(ContainerAlert.objects.filter(rule=rule).exclude(state="resolved"))


def test_a_container_recreated_without_its_volume_asks_the_tenant_to_scan_again(
    start_worker, owner_client, engine
):
    start_worker()
    chip = working_chip(owner_client.tenant)
    container = chip.waha_session.container
    raw = engine.containers.get(container.runtime_id)
    volume = raw.labels["whago.volume"]

    # The container and its data are gone (a host rebuilt, a volume removed by hand).
    raw.remove(force=True)
    engine.volumes.get(volume).remove(force=True)
    report = manager.health_sweep()
    print(f"health sweep after the loss: {report}")

    assert container.name in report["repaired"]
    chip = wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE, timeout=60)  # no longer WORKING: scan again
    assert owner_client.get(reverse("chip_qr", args=[chip.pk])).status_code == 200
    [lost] = alerts(AlertRule.SESSION_LOST)
    assert chip.session_name in lost.subject and "scan a new QR code" in lost.message


def test_an_unreachable_container_shows_its_chips_reconnecting_and_alerts_the_operators(
    start_worker, owner_client, engine, settings
):
    settings.WAHA_RECONNECTING_SECONDS = 0
    settings.WAHA_ALERT_DOWN_MINUTES = 0
    start_worker()
    chip = working_chip(owner_client.tenant)
    container = chip.waha_session.container
    raw = engine.containers.get(container.runtime_id)

    raw.pause()  # the process is there but answers nothing
    try:
        report = manager.health_sweep()
        assert container.name in report["unhealthy"]
        assert chip_row(chip.pk).status == Chip.Status.STARTING  # reconnecting, not WORKING
        manager.alert_sweep(orphans=[])
        [down] = alerts(AlertRule.DOWN)
        assert down.subject == container.name and "reconnecting" in down.message
    finally:
        raw.unpause()

    report = manager.health_sweep()
    assert container.name in report["healthy"]
    wait_chip(chip.pk, Chip.Status.WORKING, timeout=30)
    manager.alert_sweep(orphans=[])
    with scopes_disabled():
        assert alerts(AlertRule.DOWN) == []
