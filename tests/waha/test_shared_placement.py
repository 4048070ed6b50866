"""FREE tenants share containers (WAHA_FREE_PLACEMENT=shared): sign-ups cannot exhaust the port
pool, each shared container is sized by WAHA's figures, and a suspended tenant's sessions stop
there without touching the others'."""
import pytest
from django_scopes import scopes_disabled

from tests.waha.conftest import wait_for
from waha import manager, ops
from waha.models import WahaContainer
from whago.models import AuditLog

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared(waha_live, settings):
    settings.WAHA_FREE_PLACEMENT = "shared"
    settings.WAHA_SESSIONS_PER_CONTAINER = 3
    return settings


def test_free_tenants_fill_shared_containers(shared, make_owner, docker_client):
    tenants = [make_owner()[1] for _ in range(4)]

    sessions = [manager.create_session(tenant, f"chip_free_{n}") for n, tenant in enumerate(tenants)]

    containers = {s.container_id for s in sessions}
    assert len(containers) == 2  # 3 seats each: four free tenants, two containers, not four
    with scopes_disabled():
        rows = list(WahaContainer.objects.filter(pk__in=containers))
    assert all(row.tenant_id is None and row.capacity == 3 for row in rows)
    assert all(row.memory_mb is None for row in rows)  # sized by WAHA_MEMORY_LIMIT for its capacity
    first = docker_client.containers.get(rows[0].runtime_id)
    assert first.labels["whago.tenant"] == "shared"
    # Filled before another is opened: three sessions in one, the fourth in the next, in WAHA too.
    assert sorted(len(manager.list_sessions(row)) for row in rows) == [1, 3]


def test_a_suspended_tenants_sessions_stop_in_a_shared_container_and_only_theirs(shared, make_owner):
    from whago import services

    (_, mine), (_, other) = make_owner(), make_owner()
    session = manager.create_session(mine, "chip_mine")
    neighbour = manager.create_session(other, "chip_other")
    assert session.container_id == neighbour.container_id
    container = session.container

    assert services.suspend_tenant(mine, reason="falta de pagamento")
    with scopes_disabled():
        [entry] = AuditLog.objects.filter(action="container.suspend")
    ops.run_action(entry.pk)  # what the worker does with the enqueued action
    with scopes_disabled():
        entry.refresh_from_db()
    assert entry.status == AuditLog.Status.SUCCEEDED, entry.error
    wait_for(lambda: {s["name"]: s["status"] for s in manager.list_sessions(container)}.get("chip_mine")
             == "STOPPED", message="the suspended tenant's session stopped")
    statuses = {s["name"]: s["status"] for s in manager.list_sessions(container)}
    assert statuses["chip_other"] != "STOPPED"

    # The health sweep does not start the suspended tenant's session again.
    manager.health_sweep()
    assert {s["name"]: s["status"] for s in manager.list_sessions(container)}["chip_mine"] == "STOPPED"
