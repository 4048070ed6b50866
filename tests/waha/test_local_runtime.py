"""The local runtime (embedded mode): simulator processes tracked by pid files under var/."""
import os
import signal

import pytest
from django_scopes import scopes_disabled

from waha import manager
from waha.models import WahaContainer
from waha.runtime import ContainerSpec
from waha.runtime.local import LocalRuntime

from .conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local(settings, tmp_path):
    settings.WAHA_RUNTIME = "local"
    settings.WAHA_ENGINE = "plus"
    settings.VAR_DIR = tmp_path
    runtime = LocalRuntime(root=tmp_path / "waha")
    yield runtime
    for info in runtime.list():
        runtime.remove(info.runtime_id, volume=True)


def spec(port: int, name: str = "whago-test-local-1") -> ContainerSpec:
    from django.conf import settings

    return ContainerSpec(
        name=name,
        port=port,
        env={"WAHA_API_KEY": "local-key", "WHATSAPP_API_HOSTNAME": "127.0.0.1"},
        labels={"whago.service": "waha", "whago.instance": settings.WHAGO_INSTANCE},
        memory_limit="512m",
    )


def test_a_local_container_lives_stops_restarts_and_goes(local, tmp_path):
    from waha.client import WahaClient

    port = manager.port_range()[-1]
    runtime_id = local.create(spec(port))
    client = WahaClient(f"http://127.0.0.1:{port}", "local-key")
    wait_for(lambda: _answers(client), message="the local simulator")
    assert local.status(runtime_id) == "running"
    assert [i.name for i in local.list()] == [runtime_id]
    client.create_session("chip_1", start=False)

    stats = local.stats(runtime_id)
    assert stats.memory_bytes > 1024 * 1024
    assert stats.memory_limit == 512 * 1024 * 1024

    local.stop(runtime_id)
    assert local.status(runtime_id) == "exited"
    local.start(runtime_id)
    wait_for(lambda: _answers(client), message="the restarted simulator")
    # Its data dir is its volume: the session survived the restart.
    assert [s["name"] for s in client.list_sessions()] == ["chip_1"]

    # A killed process is noticed (pid files are not trusted blindly).
    os.kill(int((tmp_path / "waha" / runtime_id / "pid").read_text()), signal.SIGKILL)
    wait_for(lambda: local.status(runtime_id) == "exited", message="the kill to be seen")
    assert "listening" in local.logs(runtime_id)

    local.remove(runtime_id)
    assert local.status(runtime_id) == "missing"
    assert local.list_volumes() == [runtime_id]
    local.remove_volume_of(runtime_id)
    assert local.list_volumes() == []


def _answers(client) -> bool:
    try:
        client.version()
    except Exception:  # noqa: BLE001 - not up yet
        return False
    return True


def test_manager_runs_the_embedded_mode_on_local_processes(local, make_tenant):
    tenant = make_tenant()
    session = manager.create_session(tenant, "chip_1")
    container = session.container
    assert container.runtime == "local"
    assert [i.name for i in local.list()] == [container.name]
    assert manager.list_sessions(container)[0]["name"] == "chip_1"
    report = manager.health_sweep()
    assert report["healthy"] == [container.name]

    manager.stop_container(container)
    assert manager.runtime_of(container).status(container.runtime_id) == "exited"
    manager.start_container(container)
    assert manager.list_sessions(container)[0]["name"] == "chip_1"
    manager.delete_container(container, volume=True)
    with scopes_disabled():
        assert not WahaContainer.objects.filter(pk=container.pk).exists()
    assert local.list() == []
