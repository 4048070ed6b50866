"""The swarm runtime on a real single-node Docker Swarm: WAHA containers as services pinned to a
node, published in host mode and reached on 127.0.0.1 (the node's address here)."""
import copy
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django_scopes import scopes_disabled

from tests.conftest import ROOT, worker_env
from waha import manager, placement
from waha.client import Unauthorized, WahaClient
from waha.models import AlertRule, ContainerAlert, ContainerStatus, WahaContainer
from waha.runtime import Node, get_runtime
from waha.runtime.swarm import node_from_swarm

from .conftest import run_label, waha_info, wait_for
from .swarmkit import node_availability, services_of_run, task_container

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


def row(pk: int) -> WahaContainer:
    with scopes_disabled():
        return WahaContainer.objects.get(pk=pk)


def working_session(tenant, phone: str):
    """A session created by WHAGO and paired through the simulator: WORKING."""
    session = manager.create_session(tenant, "chip_1")
    container = session.container
    wait_for(lambda: waha_info(session)["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    requests.post(f"{container.base_url}/_sim/sessions/{session.remote_name}/scan", json={"phone": phone},
                  headers={"X-Api-Key": container.api_key}, timeout=10).raise_for_status()
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING")
    return session, container


def test_a_tenant_container_is_a_service_pinned_to_its_node(
    waha_swarm, make_tenant, docker_client, swarm, client
):
    store = "postgres://waha:segredo@127.0.0.1:5432/postgres?sslmode=disable"
    waha_swarm.WAHA_SESSIONS_POSTGRESQL_URL = store
    tenant = make_tenant()

    container = manager.ensure_container(tenant)

    # WHAGO recorded the node and reaches the container at the node's address.
    hostname = docker_client.nodes.get(swarm).attrs["Description"]["Hostname"]
    assert (container.node, container.node_name, container.node_address) == (swarm, hostname, "127.0.0.1")
    assert container.base_url == f"http://127.0.0.1:{container.port}"
    [service] = services_of_run(docker_client, whago_tenant=tenant.pk)
    assert service.id == container.runtime_id
    spec = service.attrs["Spec"]
    assert spec["Name"] == container.name
    assert spec["Labels"]["whago.service"] == "waha" and spec["Labels"]["whago.container"] == str(container.pk)
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    task = spec["TaskTemplate"]
    # The tenant's plan (FREE: 512 MB, half a CPU), reserved on the node; processes and logs bounded.
    assert (container.memory_mb, container.cpus) == (512, Decimal("0.50"))
    assert task["Resources"]["Limits"] == {"MemoryBytes": 512 * MB, "NanoCPUs": 500_000_000, "Pids": 512}
    assert task["Resources"]["Reservations"] == {"MemoryBytes": 512 * MB}
    assert task["RestartPolicy"]["Condition"] == "any"
    assert task["Placement"]["Constraints"] == [f"node.id == {swarm}"]
    assert task["LogDriver"] == {"Name": "json-file", "Options": {"max-file": "3", "max-size": "10m"}}
    # The image by its id: no registry is asked, every task runs the very image.
    assert task["ContainerSpec"]["Image"] == docker_client.images.get(settings.WAHA_IMAGE).id
    assert "/ping" in " ".join(task["ContainerSpec"]["Healthcheck"]["Test"])
    [mount] = task["ContainerSpec"]["Mounts"]
    assert (mount["Type"], mount["Source"], mount["Target"]) == ("volume", f"{container.name}-data", "/app/.sessions")
    # Published in host mode on the node that runs it (no routing mesh).
    assert spec["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": container.port, "PublishedPort": container.port, "PublishMode": "host"}
    ]
    # WAHA Plus's PostgreSQL store, with a worker id per server sharing it.
    env = dict(item.split("=", 1) for item in task["ContainerSpec"]["Env"])
    assert (env["WHATSAPP_SESSIONS_POSTGRESQL_URL"], env["WAHA_WORKER_ID"]) == (store, container.name)
    raw = task_container(docker_client, container.runtime_id)
    assert raw.labels["whago.instance"] == settings.WHAGO_INSTANCE
    assert docker_client.volumes.get(f"{container.name}-data").attrs["Labels"]["whago.container"] == str(container.pk)
    # Its API on loopback, with its key only.
    assert manager.client_for(container).version()["tier"] == "PLUS"
    with pytest.raises(Unauthorized):
        WahaClient(container.base_url, "wrong").version()
    # Stats from the task's container on this node, logs from the service.
    stats = manager.container_stats(container)
    assert stats.memory_limit == 512 * MB and stats.memory_bytes > 0
    assert "WAHA simulator listening" in manager.container_logs(container)

    # The operators see the node of each container.
    from whago.models import User

    operator = User.objects.create_superuser(email="ops-swarm@whago.test", password="Zebra-Cachoeira-2026!")
    client.force_login(operator)
    page = client.get("/admin/waha/wahacontainer/").content.decode()
    assert container.name in page and f'<td class="field-on_node">{hostname}</td>' in page
    page = client.get(f"/admin/waha/wahacontainer/{container.pk}/change/").content.decode()
    assert hostname in page and "127.0.0.1" in page

    # waha_doctor, as operators run it, on the swarm runtime.
    result = subprocess.run(
        [sys.executable, "manage.py", "waha_doctor"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=worker_env(WAHA_RUNTIME="swarm", WAHA_NETWORK_MODE="publish", WAHA_SWARM_NODE_ADDRESS="127.0.0.1",
                       WAHA_IMAGE=settings.WAHA_IMAGE),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Docker Swarm of 1 node(s)" in result.stdout
    assert f"node {hostname} (127.0.0.1) takes WAHA containers" in result.stdout
    assert f"ports {settings.WAHA_PORT_RANGE} on 1 node(s): 1 of 100 reserved" in result.stdout
    assert f"{container.name} (tenant {tenant.name}, port {container.port}): healthy" in result.stdout


def test_stop_start_restart_resize_and_delete(waha_swarm, make_tenant, docker_client, swarm):
    from billing.models import Plan, Subscription

    tenant = make_tenant()
    session, container = working_session(tenant, "5511999990011")

    # Stopped on purpose: scaled to 0, and the sweep leaves it so.
    manager.stop_container(container)
    assert docker_client.services.get(container.runtime_id).attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    assert get_runtime("swarm").status(container.runtime_id) == "exited"
    manager.health_sweep()
    assert get_runtime("swarm").status(container.runtime_id) == "exited"
    # Started again: the same service, the session back from its volume on the same node.
    assert manager.ensure_container(tenant).pk == container.pk
    container = row(container.pk)
    manager.wait_ready(container)
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the start")

    # A restart is a new task (force update) on the same node, the session resumed.
    before = task_container(docker_client, container.runtime_id).id
    manager.restart_container(container)
    assert task_container(docker_client, container.runtime_id, other_than=before)
    assert not docker_client.containers.list(filters={"id": before, "status": "running"})
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the restart")

    # A bigger plan: Swarm replaces the task with the new limits, still pinned to the node.
    with scopes_disabled():
        bigger = Plan.objects.create(code="BIGGER", name="Bigger", max_chips=5, messages_per_day=100,
                                     messages_per_month=1000, container_memory_mb=1024, container_cpus=Decimal("1"))
        Subscription.objects.update_or_create(tenant=tenant, defaults={"plan": bigger,
                                                                       "status": Subscription.Status.ACTIVE})
    assert manager.resize_containers(tenant.pk) == [container.name]
    task = docker_client.services.get(container.runtime_id).attrs["Spec"]["TaskTemplate"]
    assert task["Resources"]["Limits"]["MemoryBytes"] == 1024 * MB
    assert task["Placement"]["Constraints"] == [f"node.id == {swarm}"]
    assert task_container(docker_client, container.runtime_id).attrs["HostConfig"]["Memory"] == 1024 * MB
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the resize")

    # Deleted with its volume: nothing of it is left.
    manager.delete_container(row(container.pk), volume=True)
    assert services_of_run(docker_client, whago_tenant=tenant.pk) == []
    assert docker_client.volumes.list(filters={"label": [run_label(), f"whago.tenant={tenant.pk}"]}) == []
    assert docker_client.containers.list(all=True, filters={"label": f"whago.tenant={tenant.pk}"}) == []


def test_a_killed_task_is_started_again_and_the_sweep_brings_its_sessions_back(
    waha_swarm, make_tenant, docker_client
):
    waha_swarm.WAHA_SIM_PROFILE = "core-2024.10"  # forgets its sessions' configs: WHAGO must give them back
    waha_swarm.WAHA_ENGINE = "core"
    tenant = make_tenant()
    session, container = working_session(tenant, "5511999990012")
    killed = task_container(docker_client, container.runtime_id)

    killed.kill()

    # Swarm starts a new task on the node by itself; WAHA Core comes back with the session STOPPED.
    assert task_container(docker_client, container.runtime_id, other_than=killed.id)
    manager.wait_ready(container)
    wait_for(lambda: manager.list_sessions(container), message="the session listed after the restart")
    assert waha_info(session)["status"] == "STOPPED"
    report = manager.health_sweep()
    assert container.name in report["healthy"] and container.name in report["repaired"]
    # The sweep gave it its config back and started it: WORKING again (its login is on the volume).
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the sweep")
    assert waha_info(session)["config"]["webhooks"][0]["url"] == container.webhook_url
    container = row(container.pk)
    assert container.restart_count == 1 and container.healthy
    # The next sweep sees the same task: nothing to repair.
    assert container.name not in manager.health_sweep()["repaired"]


def test_a_drained_node_takes_the_containers_down_and_back(
    waha_swarm, make_tenant, docker_client, swarm, changes_node
):
    waha_swarm.WAHA_RECONNECTING_SECONDS = 0
    waha_swarm.WAHA_ALERT_DOWN_MINUTES = 0
    tenant = make_tenant()
    session, container = working_session(tenant, "5511999990013")
    manager.health_sweep()

    node_availability(docker_client, swarm, "drain")
    try:
        wait_for(lambda: get_runtime("swarm").status(container.runtime_id) != "running", 30, message="the drain")
        report = manager.health_sweep()
        # No other node to move it to: down, saying why; its chip shows as reconnecting.
        assert container.name in report["unhealthy"] and report["moved"] == []
        down = row(container.pk)
        assert not down.healthy and "no suitable node" in down.last_error
        assert down.node == swarm
        with scopes_disabled():
            session.refresh_from_db()
        assert session.status == "STARTING"
        manager.alert_sweep(orphans=[])
        with scopes_disabled():
            [alert] = ContainerAlert.objects.filter(rule=AlertRule.DOWN).exclude(state="resolved")
        assert alert.subject == container.name and "no suitable node" in alert.message
        with pytest.raises(manager.NoNodeWithRoom, match="0 WAHA node"):
            manager.ensure_container(make_tenant())
    finally:
        node_availability(docker_client, swarm, "active")

    wait_for(lambda: get_runtime("swarm").status(container.runtime_id) == "running", 30, message="the task back")
    report = manager.health_sweep()
    assert container.name in report["healthy"] and container.name in report["repaired"]
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the drain")
    manager.health_sweep()
    with scopes_disabled():
        session.refresh_from_db()
    assert session.status == "WORKING" and row(container.pk).healthy
    manager.alert_sweep(orphans=[])
    with scopes_disabled():
        assert not ContainerAlert.objects.filter(rule=AlertRule.DOWN).exclude(state="resolved").exists()


def test_orphan_services_are_removed_and_lost_services_created_again(
    waha_swarm, make_tenant, docker_client, simulator_image, swarm
):
    import docker

    port = manager.port_range()[-1]
    orphan = docker_client.services.create(
        docker_client.images.get(simulator_image).id,
        name=f"whago-{manager.instance_slug()}-waha-orphan",
        labels={"whago.service": "waha", "whago.instance": settings.WHAGO_INSTANCE, "whago.tenant": "0"},
        env=[f"WHATSAPP_API_PORT={port}"],
        endpoint_spec=docker.types.EndpointSpec(ports={port: (port, "tcp", "host")}),
    )
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    docker_client.services.get(container.runtime_id).remove()
    wait_for(lambda: get_runtime("swarm").status(container.runtime_id) == "missing", message="the removal")

    assert orphan.name not in [info.name for _, info in manager.find_orphans()]  # younger than the grace
    report = manager.cleanup_orphans(grace=timedelta(0))

    assert report == {"removed": [orphan.name], "recreated": [container.name], "errors": []}
    names = [s.name for s in services_of_run(docker_client)]
    assert names == [container.name]
    container = row(container.pk)
    assert container.node == swarm and get_runtime("swarm").status(container.runtime_id) == "running"
    manager.wait_ready(container)


def test_placement_over_the_swarms_nodes(waha_swarm, make_tenant, docker_client, swarm, changes_node):
    runtime = get_runtime("swarm")
    [node] = runtime.nodes()
    hostname = docker_client.nodes.get(swarm).attrs["Description"]["Hostname"]
    assert (node.id, node.name, node.address, node.local, node.ready) == (swarm, hostname, "127.0.0.1", True, True)
    assert node.memory_bytes > 0 and not node.labelled
    waha_swarm.WAHA_SWARM_NODE_ADDRESS = ""
    # Its own address in the swarm: the advertised 127.0.0.1.
    assert runtime.nodes()[0].address == "127.0.0.1"
    waha_swarm.WAHA_SWARM_NODE_ADDRESS = "127.0.0.1"

    # More nodes, built from the real one: another ready node, a drained one, a lost one.
    raw = docker_client.api.inspect_node(swarm)

    def other(node_id: str, availability="active", state="ready", labels=None) -> Node:
        copied = copy.deepcopy(raw)
        copied["ID"], copied["Description"]["Hostname"] = node_id, f"host-{node_id}"
        copied["Spec"].update(Availability=availability, Labels=labels or {})
        copied["Status"]["State"] = state
        return node_from_swarm(copied, swarm)

    second, drained, lost = other("n2"), other("n3", availability="drain"), other("n4", state="down")
    nodes = [node, second, drained, lost]
    assert placement.waha_nodes(nodes) == [node, second]
    # Spread: the node with fewer containers first, then less memory reserved; full nodes left out.
    needed = 512 * MB
    assert placement.rank_nodes(nodes, needed, {swarm: (1, needed)}) == [second, node]
    assert placement.rank_nodes(nodes, needed, {"n2": (1, needed)}) == [node, second]
    assert placement.rank_nodes(nodes, needed, {"n2": (1, second.memory_bytes)}) == [node]
    # Nodes labelled for WAHA: only they take containers once any node has the label.
    labelled = other("n5", labels={"whago.waha": "true"})
    assert placement.waha_nodes([*nodes, labelled]) == [labelled]

    # Capacity is each node's port range: on this one node, the range's two ports.
    first = manager.port_range()[0]
    waha_swarm.WAHA_PORT_RANGE = f"{first}-{first + 1}"
    a, b = manager.ensure_container(make_tenant(), wait=False), manager.ensure_container(make_tenant(), wait=False)
    assert {a.port, b.port} == {first, first + 1} and a.node == b.node == swarm
    with pytest.raises(manager.PortRangeExhausted, match=r"on every WAHA node \(1\)"):
        manager.ensure_container(make_tenant())
    # A port is reserved per node: the same port on another node is free (the unique key is both).
    with scopes_disabled():
        WahaContainer.objects.create(name="elsewhere", runtime="swarm", port=a.port, node="n2",
                                     status=ContainerStatus.STOPPED)

    # Labelled for WAHA: the real node is the only one labelled, so it still takes containers;
    # once the label is on another node only, it takes none.
    node_spec = docker_client.nodes.get(swarm).attrs["Spec"]
    try:
        docker_client.nodes.get(swarm).update({**node_spec, "Labels": {"whago.waha": "true"}})
        [labelled_node] = runtime.nodes()
        assert labelled_node.labelled and placement.waha_nodes([labelled_node, second]) == [labelled_node]
        docker_client.nodes.get(swarm).update({**node_spec, "Labels": {"whago.waha": "false"}})
        assert placement.waha_nodes([*runtime.nodes(), labelled]) == [labelled]
    finally:
        docker_client.nodes.get(swarm).update({**node_spec, "Labels": node_spec.get("Labels") or {}})
    assert not runtime.nodes()[0].labelled


def test_a_container_on_a_lost_node_is_moved_when_another_node_has_room(waha_swarm, make_tenant, swarm):
    """One machine has one node: the move is checked by pinning a container to a node that left
    the swarm (an id Swarm does not know), which relocate_stranded moves to the real node."""
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).update(node="gone-node", node_name="gone", node_address="")
        container = WahaContainer.objects.get(pk=container.pk)

    moved = manager.relocate_stranded([container])

    assert moved == [container.name]
    container = row(container.pk)
    assert (container.node, container.node_address) == (swarm, "127.0.0.1")
    task = get_runtime("swarm").client.services.get(container.runtime_id).attrs["Spec"]["TaskTemplate"]
    assert task["Placement"]["Constraints"] == [f"node.id == {swarm}"]
    # Its task starts again on the new port: once it answers, the health sweep counts it healthy (a
    # busy machine takes a while to start it; the sweep alone would see it still starting).
    manager.wait_ready(row(container.pk))
    report = manager.health_sweep()
    assert container.name in report["healthy"]
