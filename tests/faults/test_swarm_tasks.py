"""Chips on WAHA services of a real single-node Docker Swarm (runtime swarm): provisioned by a real
worker, then their task killed and their node drained. Swarm starts the task again where it can;
the health sweep brings the sessions back and the chips work again, without the tenant."""
import pytest
from django_scopes import scopes_disabled

from chips import sending
from chips.models import Chip, Message
from tests.chips.conftest import DOCKER, chip_row, set_plan, sim_of, wait_chip, wait_message, working_chip
from tests.waha.conftest import wait_for
from tests.waha.swarmkit import node_availability, services_of_run, task_container
from waha import manager
from waha.runtime import get_runtime

pytestmark = DOCKER

# Host networking on the node: the containers post their webhooks to the live app on 127.0.0.1.
SWARM = {"WAHA_RUNTIME": "swarm", "WAHA_NETWORK_MODE": "host", "WAHA_SWARM_NODE_ADDRESS": "127.0.0.1",
         "WAHA_RECONNECTING_SECONDS": "0"}


@pytest.fixture
def on_swarm(settings, swarm_node, waha_env):
    """The worker and this process on the swarm runtime (waha_env's docker settings otherwise)."""
    for key, value in SWARM.items():
        setattr(settings, key, type(getattr(settings, key))(value))
    return SWARM


def sends(tenant, chip: Chip, text: str) -> None:
    message, _ = sending.send_message(tenant, chip, "11988887777", text=text)
    wait_message(message.pk, Message.Status.DELIVERED, timeout=30)


def test_chips_on_a_swarm_service_survive_a_killed_task_and_a_drained_node(
    start_worker, on_swarm, owner_client, docker_client, swarm, changes_node
):
    start_worker(**on_swarm)
    tenant = owner_client.tenant
    set_plan(tenant, "BUSINESS")
    chips = [working_chip(tenant, alias=f"Loja {n}", phone=f"551199999002{n}") for n in range(2)]
    container = chip_row(chips[0].pk).waha_session.container
    assert container.runtime == "swarm" and container.node == swarm
    assert chip_row(chips[1].pk).waha_session.container.pk == container.pk
    [service] = services_of_run(docker_client, whago_tenant=tenant.pk)
    assert service.id == container.runtime_id
    killed = task_container(docker_client, container.runtime_id)
    assert killed.attrs["HostConfig"]["NetworkMode"] == "host"

    # A task killed: Swarm starts another on the node; the sweep sees it and resumes the sessions.
    killed.kill()
    task_container(docker_client, container.runtime_id, other_than=killed.id)
    report = manager.health_sweep()
    assert container.name in report["repaired"]
    for chip in chips:
        wait_chip(chip.pk, Chip.Status.WORKING, timeout=60)
    assert {s["status"] for s in sim_of(chips[0]).sessions().values()} == {"WORKING"}
    sends(tenant, chips[0], "De volta depois da queda")

    # The node drained: nowhere to go on one node, the chips show as reconnecting...
    node_availability(docker_client, swarm, "drain")
    try:
        wait_for(lambda: get_runtime("swarm").status(container.runtime_id) != "running", 30, message="the drain")
        report = manager.health_sweep()
        assert container.name in report["unhealthy"]
        for chip in chips:
            assert chip_row(chip.pk).status == Chip.Status.STARTING
    finally:
        node_availability(docker_client, swarm, "active")
    # ...and WORKING again once it is active: Swarm starts the task there, the sweep the sessions.
    wait_for(lambda: get_runtime("swarm").status(container.runtime_id) == "running", 30, message="the task back")
    report = manager.health_sweep()
    assert container.name in report["repaired"]
    for chip in chips:
        wait_chip(chip.pk, Chip.Status.WORKING, timeout=60)
    sends(tenant, chips[1], "De volta depois do dreno")
    with scopes_disabled():
        container.refresh_from_db()
    assert container.restart_count == 2 and container.healthy and container.node == swarm
