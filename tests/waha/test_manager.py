"""waha.manager on the real Docker engine with the simulator image, webhooks to the live app."""
import io
import socket
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.db import connection
from django_scopes import scopes_disabled
from PIL import Image
from pyzbar.pyzbar import decode

from waha import manager
from waha.client import Unauthorized, WahaClient, message_id
from waha.models import ContainerStatus, WahaContainer, WahaSession, WebhookEvent
from waha.runtime import RuntimeFailure
from waha.sessions import NOWEB_CONFIG

from .conftest import run_label, waha_info, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

PROXY = {"server": "127.0.0.1:1080", "username": "cliente1", "password": "s3nh@-proxy"}


def containers_of(docker_client, tenant) -> list:
    return docker_client.containers.list(all=True, filters={"label": [run_label(), f"whago.tenant={tenant.pk}"]})


def rows(**filters) -> list[WahaContainer]:
    with scopes_disabled():
        return list(WahaContainer.objects.filter(**filters))


def test_tenant_container_is_created_with_labels_limits_volume_and_key(
    waha_docker, make_tenant, docker_client
):
    tenant = make_tenant()

    container = manager.ensure_container(tenant)

    assert container.status == ContainerStatus.RUNNING
    assert container.port in manager.port_range()
    [docker_container] = containers_of(docker_client, tenant)
    attrs = docker_container.attrs
    assert docker_container.id == container.runtime_id
    assert docker_container.status == "running"
    assert attrs["Config"]["Labels"]["whago.service"] == "waha"
    assert attrs["Config"]["Labels"]["whago.container"] == str(container.pk)
    assert attrs["Config"]["Image"] == "whago/waha-simulator:latest"
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # Bounded by the tenant's plan (FREE: 512 MB, half a CPU), no swap, pids and logs capped, checked.
    host = attrs["HostConfig"]
    assert (container.memory_mb, container.cpus) == (512, Decimal("0.50"))
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024 * 1024
    assert (host["CpuPeriod"], host["CpuQuota"]) == (100_000, 50_000)
    assert host["PidsLimit"] == 512
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert "/ping" in " ".join(attrs["Config"]["Healthcheck"]["Test"])
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    [mount] = attrs["Mounts"]
    assert (mount["Type"], mount["Name"]) == ("volume", f"{container.name}-data")
    assert mount["Destination"] == "/app/.sessions"
    env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
    assert env["WHATSAPP_API_PORT"] == str(container.port)
    assert env["WAHA_API_KEY"] == container.api_key
    # The key is encrypted at rest: the database never holds it in clear.
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, webhook_key FROM waha_wahacontainer WHERE id = %s", [container.pk])
        stored_api_key, stored_webhook_key = cursor.fetchone()
    assert container.api_key not in stored_api_key and stored_api_key.startswith("fernet:")
    assert container.webhook_key not in stored_webhook_key
    # The API answers with the key, refuses without it, on loopback.
    assert manager.client_for(container).version()["tier"] == "PLUS"
    with pytest.raises(Unauthorized):
        WahaClient(container.base_url, "wrong").version()
    assert container.base_url == f"http://127.0.0.1:{container.port}"


def test_ten_simultaneous_calls_make_exactly_one_container(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    results, errors = [], []
    barrier = threading.Barrier(10)

    def call():
        try:
            barrier.wait()
            results.append(manager.ensure_container(tenant.pk).pk)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 10 and len(set(results)) == 1
    assert len(rows(tenant=tenant)) == 1
    assert len(containers_of(docker_client, tenant)) == 1


def test_ports_come_from_the_range_and_exhaustion_creates_nothing(waha_docker, make_tenant, docker_client):
    first_port = manager.port_range()[0]
    waha_docker.WAHA_PORT_RANGE = f"{first_port}-{first_port + 1}"
    tenant_a = make_tenant()
    tenant_b = make_tenant()
    tenant_c = make_tenant()
    # Another program listens on the first port: it is skipped, not fought over.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first_port))
        squatter.listen()
        a = manager.ensure_container(tenant_a)
        assert a.port == first_port + 1
        with pytest.raises(manager.PortRangeExhausted, match="WAHA_PORT_RANGE"):
            manager.ensure_container(tenant_b)
    b = manager.ensure_container(tenant_b)
    assert b.port == first_port

    with pytest.raises(manager.PortRangeExhausted):
        manager.ensure_container(tenant_c)
    assert rows(tenant=tenant_c) == []
    assert containers_of(docker_client, tenant_c) == []


def test_runtime_failure_leaves_nothing_half_created(waha_docker, make_tenant, docker_client):
    waha_docker.WAHA_IMAGE = "whago/no-such-image:never"
    tenant = make_tenant()

    with pytest.raises(RuntimeFailure, match="no-such-image"):
        manager.ensure_container(tenant)

    assert rows(tenant=tenant) == []
    assert containers_of(docker_client, tenant) == []
    assert docker_client.volumes.list(filters={"label": [run_label(), f"whago.tenant={tenant.pk}"]}) == []


def test_delete_keeps_the_volume_unless_asked(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    kept = manager.ensure_container(tenant)
    manager.delete_container(kept)
    assert rows(pk=kept.pk) == []
    assert containers_of(docker_client, tenant) == []
    assert docker_client.volumes.get(f"{kept.name}-data")

    gone = manager.ensure_container(tenant)
    manager.delete_container(gone, volume=True)
    assert containers_of(docker_client, tenant) == []
    names = [v.name for v in docker_client.volumes.list(filters={"label": run_label()})]
    assert f"{gone.name}-data" not in names
    assert f"{kept.name}-data" in names


def test_session_lifecycle_with_proxy_webhooks_qr_scan_send_and_ack(waha_live, make_tenant, waha_signals):
    tenant = make_tenant()

    session = manager.create_session(tenant, "chip_1", proxy=PROXY)

    container = session.container
    info = waha_info(session)
    assert info["config"]["proxy"] == PROXY
    [webhook] = info["config"]["webhooks"]
    base = f"{waha_live.url.replace('localhost', '127.0.0.1')}/api/v1/webhooks/waha/{container.pk}/"
    assert webhook["url"] == base + container.webhook_token and len(container.webhook_token) >= 40
    assert webhook["hmac"] == {"key": container.webhook_key}
    assert set(webhook["events"]) == {"session.status", "message", "message.ack"}
    assert [s["name"] for s in manager.list_sessions(container)] == ["chip_1"]
    # Creating it again (a retried task) updates it, still one session.
    assert manager.create_session(tenant, "chip_1", proxy=PROXY).pk == session.pk
    assert [s["name"] for s in manager.list_sessions(container)] == ["chip_1"]

    wait_for(lambda: waha_info(session)["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    for _ in range(3):  # the QR rotates: retry when it changed between the two raw reads
        before, png, after = manager.qr(session, "raw"), manager.qr(session, "image"), manager.qr(session, "raw")
        if before == after:
            break
    assert decode(Image.open(io.BytesIO(png)))[0].data.decode() == before
    assert manager.request_code(session, "5511999990001")

    # The fake phone scans the current QR: the container posts session.status to the app.
    scan = requests.post(
        f"{container.base_url}/_sim/sessions/chip_1/scan",
        json={"phone": "5511999990001", "pushName": "Loja Teste", "value": before},
        headers={"X-Api-Key": container.api_key},
        timeout=10,
    )
    assert scan.status_code in (200, 201), scan.text
    working = wait_for(
        lambda: [c for c in waha_signals.calls["session_status_changed"] if c["status"] == "WORKING"],
        message="the WORKING session.status webhook",
    )[0]
    assert working["session"] == "chip_1"
    assert working["tenant"].pk == tenant.pk
    assert working["me"]["id"] == "5511999990001@c.us"
    with scopes_disabled():
        session.refresh_from_db()
        assert session.status == "WORKING"
        assert session.me_id == "5511999990001@c.us"
        assert WebhookEvent.objects.filter(container=container, event="session.status").exists()

    sent = manager.send_text(session, "5511988887777@c.us", "Olá, tudo bem?")
    sent_id = message_id(sent)
    assert sent_id
    ack = wait_for(
        lambda: [c for c in waha_signals.calls["message_ack"] if c["message_id"] == sent_id],
        message="message.ack for the sent message",
    )[0]
    assert ack["ack"] >= 1
    assert ack["session"] == "chip_1"
    # WAHA's own record of the chat lists it under the same id (NOWEB's store is on in the config).
    assert info["config"]["noweb"] == NOWEB_CONFIG
    assert [m["id"] for m in manager.chat_messages(session, "5511988887777@c.us", limit=5)] == [sent_id]
    assert manager.chat_messages(session, "5511900000000@c.us") == []

    manager.delete_session(session)
    assert manager.list_sessions(container) == []
    with scopes_disabled():
        assert not WahaSession.objects.filter(pk=session.pk).exists()


def test_killed_container_is_restarted_by_the_health_sweep_and_its_session_works(
    waha_live, make_tenant, docker_client, waha_signals
):
    tenant = make_tenant()
    session = manager.create_session(tenant, "chip_1")
    container = session.container
    wait_for(lambda: waha_info(session)["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    requests.post(
        f"{container.base_url}/_sim/sessions/chip_1/scan",
        json={"phone": "5511999990002"},
        headers={"X-Api-Key": container.api_key},
        timeout=10,
    ).raise_for_status()
    def working_webhooks() -> int:
        return len([c for c in waha_signals.calls["session_status_changed"] if c["status"] == "WORKING"])

    wait_for(lambda: working_webhooks() == 1, message="the WORKING webhook")

    docker_client.containers.get(container.runtime_id).kill()
    wait_for(lambda: docker_client.containers.get(container.runtime_id).status != "running", message="the kill")

    report = manager.health_sweep()

    assert container.name in report["healthy"]
    assert docker_client.containers.get(container.runtime_id).status == "running"
    # The restarted container resumes the session from its volume: WORKING again, and
    # it says so with a new session.status webhook.
    wait_for(lambda: waha_info(session)["status"] == "WORKING", message="WORKING after the restart")
    wait_for(lambda: working_webhooks() == 2, message="a WORKING webhook after the restart")
    with scopes_disabled():
        container.refresh_from_db()
        session.refresh_from_db()
    assert container.healthy and container.down_since is None
    assert session.status == "WORKING" and session.me_id == "5511999990002@c.us"
    # Docker does not restart a killed container itself: the sweep did.
    assert container.name in report["repaired"]
    assert container.restart_count == 1


def test_health_sweep_marks_an_unanswering_container_down(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    docker_client.containers.get(container.runtime_id).pause()
    try:
        assert container.name in manager.health_sweep()["unhealthy"]
        with scopes_disabled():
            container.refresh_from_db()
        assert not container.healthy and container.down_since is not None
        assert container.last_error
    finally:
        docker_client.containers.get(container.runtime_id).unpause()
    assert container.name in manager.health_sweep()["healthy"]
    with scopes_disabled():
        container.refresh_from_db()
    assert container.healthy and container.down_since is None


def test_orphans_both_ways(waha_docker, make_tenant, docker_client, simulator_image):
    # A labelled container with no row (e.g. a crash between create and commit).
    orphan = docker_client.containers.run(
        simulator_image,
        name=f"whago-{manager.instance_slug()}-waha-orphan",
        labels={"whago.service": "waha", "whago.instance": settings.WHAGO_INSTANCE, "whago.tenant": "0"},
        environment={"WHATSAPP_API_PORT": str(manager.port_range()[-1])},
        network_mode="host",
        detach=True,
    )
    # And a row whose container is gone.
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    docker_client.containers.get(container.runtime_id).remove(force=True)

    # Not yet old enough: a container being created right now is left alone.
    assert orphan.name not in [info.name for _, info in manager.find_orphans()]
    assert orphan.name in [info.name for _, info in manager.find_orphans(grace=timedelta(0))]

    report = manager.cleanup_orphans(grace=timedelta(0))

    assert report["removed"] == [orphan.name]
    assert report["recreated"] == [container.name]
    names = [c.name for c in docker_client.containers.list(all=True, filters={"label": run_label()})]
    assert orphan.name not in names
    assert container.name in names
    with scopes_disabled():
        container.refresh_from_db()
    assert docker_client.containers.get(container.runtime_id).status == "running"
    manager.wait_ready(container)


def test_stop_and_start_on_purpose(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    manager.stop_container(container)
    assert docker_client.containers.get(container.runtime_id).status == "exited"
    # A container stopped on purpose is not restarted by the sweep.
    manager.health_sweep()
    assert docker_client.containers.get(container.runtime_id).status == "exited"
    # ensure_container starts it again rather than making another one.
    assert manager.ensure_container(tenant).pk == container.pk
    assert docker_client.containers.get(container.runtime_id).status == "running"
    assert "WAHA simulator listening" in manager.container_logs(container)


def test_core_engine_places_one_session_per_container_named_default(waha_docker, make_tenant, docker_client):
    waha_docker.WAHA_ENGINE = "core"
    tenant = make_tenant()

    first = manager.create_session(tenant, "chip_a", start=False)
    second = manager.create_session(tenant, "chip_b", start=False)

    assert first.container.pk != second.container.pk
    assert (first.remote_name, second.remote_name) == ("default", "default")
    assert first.container.capacity == 1
    for session in (first, second):
        assert [s["name"] for s in manager.list_sessions(session.container)] == ["default"]
        assert manager.client_for(session.container).version()["tier"] == "CORE"
    assert len(containers_of(docker_client, tenant)) == 2


def test_a_plus_container_fills_up_before_another_is_made(waha_docker, make_tenant):
    waha_docker.WAHA_SESSIONS_PER_CONTAINER = 2
    tenant = make_tenant()
    sessions = [manager.create_session(tenant, f"chip_{n}", start=False) for n in range(3)]
    assert sessions[0].container.pk == sessions[1].container.pk != sessions[2].container.pk
    # Deleting a session frees its seat.
    manager.delete_session(sessions[0])
    assert manager.create_session(tenant, "chip_9", start=False).container.pk == sessions[1].container.pk


def test_a_container_lost_by_the_engine_is_recreated_on_use(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    session = manager.create_session(tenant, "chip_1", start=False)
    old_id = session.container.runtime_id
    docker_client.containers.get(old_id).remove(force=True)

    again = manager.create_session(tenant, "chip_1", start=False)

    assert again.pk == session.pk
    with scopes_disabled():
        container = WahaContainer.objects.get(pk=session.container.pk)
    assert container.runtime_id != old_id
    assert docker_client.containers.get(container.runtime_id).status == "running"
    # Its volume survived: the session is still there.
    assert [s["name"] for s in manager.list_sessions(container)] == ["chip_1"]


def test_operators_see_containers_in_the_admin(waha_docker, make_tenant, client):
    from whago.models import User

    operator = User.objects.create_superuser(email="ops-waha@whago.test", password="Zebra-Cachoeira-2026!")
    tenant = make_tenant()
    session = manager.create_session(tenant, "chip_1", start=False)
    client.force_login(operator)
    for url in ("/admin/waha/wahacontainer/", f"/admin/waha/wahacontainer/{session.container.pk}/change/",
                "/admin/waha/wahasession/", "/admin/waha/webhookevent/", "/admin/waha/containeralert/",
                "/admin/waha/statssample/"):
        response = client.get(url)
        assert response.status_code == 200, url
    assert session.container.name in client.get("/admin/waha/wahacontainer/").content.decode()
    page = client.get(f"/admin/waha/wahacontainer/{session.container.pk}/change/").content.decode()
    assert "chip_1" in page
    assert session.container.api_key not in page and session.container.webhook_key not in page


def test_a_plan_change_resizes_the_tenants_container(
    waha_docker, make_tenant, docker_client
):
    from billing.models import Plan, Subscription

    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    with scopes_disabled():
        bigger = Plan.objects.create(code="BIGGER", name="Bigger", max_chips=5, messages_per_day=100,
                                     messages_per_month=1000, container_memory_mb=1024, container_cpus=Decimal("1"))
        Subscription.objects.update_or_create(
            tenant=tenant, defaults={"plan": bigger, "status": Subscription.Status.ACTIVE})

    assert manager.resize_containers(tenant.pk) == [container.name]

    host = docker_client.containers.get(container.runtime_id).attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 1024 * 1024 * 1024
    assert host["CpuQuota"] == 100_000
