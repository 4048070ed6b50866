"""The Docker engine fails under a worker that is provisioning chips: it hangs up mid-call, or it
is down altogether. The chip waits (PROVISIONING, "WHAGO keeps trying"), never FAILED for an
outage, and continues by itself when the engine is back — the tenant does nothing."""
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips import lifecycle
from chips.models import Chip
from tests.chips.conftest import DOCKER, chip_row, wait_chip, wait_until

from .forwarder import DOWN, DROP, PASS, DockerForwarder

pytestmark = DOCKER


@pytest.fixture
def engine(tmp_path):
    forwarder = DockerForwarder(tmp_path / "docker.sock").start()
    yield forwarder
    forwarder.stop()


@pytest.mark.parametrize("fault", [DROP, DOWN], ids=["engine hangs up mid-call", "engine down"])
def test_a_chip_provisioned_through_an_engine_outage_continues_by_itself(engine, start_worker, owner_client, fault):
    start_worker(DOCKER_HOST=engine.url)
    engine.set(fault)

    assert owner_client.post(reverse("chip_create"), {"alias": "Loja"}).status_code == 302
    chip = Chip.all_objects.with_scopes_disabled().get(tenant=owner_client.tenant)

    waiting = wait_until(lambda: (row := chip_row(chip.pk)).last_error and row, 60, 0.2, "the outage recorded")
    assert waiting.status == Chip.Status.PROVISIONING
    assert "unix://" not in waiting.last_error and str(engine.path) not in waiting.last_error
    page = owner_client.get(reverse("chip_detail", args=[chip.pk])).content.decode()
    assert "id=\"state-container-unavailable\"" in page
    if fault == DROP:
        assert engine.dropped >= 1

    engine.set(PASS)
    chip = wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE, timeout=120)
    assert chip.last_error == ""
    print(f"fault={fault}: dropped {engine.dropped} engine calls; the chip reached SCAN_QR_CODE by itself")


def test_the_provisioning_sweep_takes_over_a_provisioning_that_stopped(start_worker, owner_client, settings):
    """A chip left PROVISIONING (its task gave up or died with its worker) is tried again by the sweep."""
    start_worker()
    settings.CHIPS_PROVISION_RETRY_SECONDS = 0
    with scopes_disabled():
        chip = Chip.objects.create(tenant=owner_client.tenant, alias="Parado")
        chip.session_name = f"chip_{chip.pk}"
        chip.save()

    assert lifecycle.provision_sweep() == {"retried": 1, "failed": 0}
    wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE, timeout=60)


def test_a_provisioning_past_its_timeout_fails_saying_what_to_do(owner_client, settings):
    settings.CHIPS_PROVISION_TIMEOUT_MINUTES = 0
    with scopes_disabled():
        chip = Chip.objects.create(tenant=owner_client.tenant, alias="Antigo")

    assert lifecycle.provision_sweep()["failed"] == 1
    chip = chip_row(chip.pk)
    assert chip.status == Chip.Status.FAILED
    assert "Connect" in chip.last_error or "Conectar" in chip.last_error
