"""Container actions from the admin, done by a real Celery worker on the real Docker engine."""
import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django_scopes import scopes_disabled

from waha import manager
from waha.models import ContainerStatus, SessionStatus, WahaContainer
from whago.models import AuditLog, Tenant

from .conftest import messages_of, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def action_url(container: WahaContainer, name: str) -> str:
    return reverse("admin:waha_wahacontainer_action", args=[container.pk, name])


def entries(action: str) -> list[AuditLog]:
    with scopes_disabled():
        return list(AuditLog.objects.filter(action=action).order_by("pk"))


def docker_status(docker_client, container: WahaContainer) -> str:
    return docker_client.containers.get(container.runtime_id).status


def test_list_stop_start_and_restart_from_the_container_page(ops_worker, ops_client, make_tenant, docker_client):
    tenant = make_tenant()
    manager.create_session(tenant, "chip_1")
    container = manager.ensure_container(tenant)
    page = ops_client.get(reverse("admin:waha_wahacontainer_change", args=[container.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("start", "stop", "restart", "delete", "list_sessions"):
        assert f'id="action-{name}"' in html
    assert "vendor/htmx-2.0.11.min.js" in html and 'id="container-logs"' in html

    # List sessions: no confirmation, the worker asks WAHA.
    response = ops_client.post(action_url(container, "list_sessions"), follow=True)
    [listed] = entries("container.list_sessions")
    assert listed.status == AuditLog.Status.SUCCEEDED, listed.error
    assert [s["name"] for s in listed.detail["sessions"]] == ["chip_1"]
    # WAHA's status code in the operator's words ("chip_1 (Parado)", not "chip_1 (STOPPED)").
    status = listed.detail["sessions"][0]["status"]
    assert f"chip_1 ({SessionStatus(status).label})" in listed.result and f"({status})" not in listed.result
    assert listed.actor == ops_client.user and listed.actor_email == ops_client.user.email
    assert listed.tenant_id == tenant.pk and listed.target_repr == container.name
    assert any("chip_1" in text for text in messages_of(response))

    # Stop: a GET only shows the confirmation; nothing happens until it is confirmed.
    confirm = ops_client.get(action_url(container, "stop"))
    assert confirm.status_code == 200 and 'name="post"' in confirm.content.decode()
    assert docker_status(docker_client, container) == "running" and entries("container.stop") == []
    response = ops_client.post(action_url(container, "stop"), {"post": "yes"}, follow=True)
    [stopped] = entries("container.stop")
    assert stopped.status == AuditLog.Status.SUCCEEDED, stopped.error
    assert stopped.finished_at >= stopped.created_at
    assert docker_status(docker_client, container) == "exited"
    with scopes_disabled():
        container.refresh_from_db()
    assert container.status == ContainerStatus.STOPPED
    assert any(container.name in text for text in messages_of(response))

    # Start: the container answers again and its session is resumed.
    ops_client.post(action_url(container, "start"), follow=True)
    [started] = entries("container.start")
    assert started.status == AuditLog.Status.SUCCEEDED, started.error
    assert started.detail["resumed"] in ([], ["chip_1"])  # WAHA itself may have restarted it already
    assert docker_status(docker_client, container) == "running"
    with scopes_disabled():
        container.refresh_from_db()
    assert container.status == ContainerStatus.RUNNING and container.started_at is not None
    assert wait_for(lambda: manager.list_sessions(container)[0]["status"] in ("STARTING", "SCAN_QR_CODE"))

    # Restart from the list (bulk action with confirmation), without waiting for the outcome:
    # the page says it still runs and links the audit entry, which the worker completes.
    settings.OPS_ACTION_WAIT_SECONDS = 0
    first_start = docker_client.containers.get(container.runtime_id).attrs["State"]["StartedAt"]
    changelist = reverse("admin:waha_wahacontainer_changelist")
    selection = {"action": "restart_selected", "_selected_action": [container.pk]}
    confirm = ops_client.post(changelist, {**selection, "index": 0})
    assert confirm.status_code == 200 and "restart_selected" in confirm.content.decode()
    assert entries("container.restart") == []
    response = ops_client.post(changelist, {**selection, "post": "yes"}, follow=True)
    [restarted] = entries("container.restart")
    audit_link = reverse("admin:whago_auditlog_change", args=[restarted.pk])
    assert any(audit_link in text for text in messages_of(response))

    def finished():
        with scopes_disabled():
            row = AuditLog.objects.get(pk=restarted.pk)
        return row if row.is_finished else None

    assert wait_for(finished, timeout=60).status == AuditLog.Status.SUCCEEDED
    assert docker_client.containers.get(container.runtime_id).attrs["State"]["StartedAt"] != first_start

    # The audit log lists all four, read-only.
    audit_page = ops_client.get(reverse("admin:whago_auditlog_changelist"))
    assert audit_page.status_code == 200
    for action in ("Listar sessões", "Parar", "Iniciar", "Reiniciar"):  # named as the page's buttons
        assert f"Contêiner: {action}</td>" in audit_page.content.decode()
    assert ops_client.post(audit_link, {"result": "edited"}).status_code == 403


def test_delete_with_its_volume_and_a_refused_start(ops_worker, ops_client, make_tenant, docker_client):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    volume = f"{container.name}-data"
    assert docker_client.volumes.get(volume)

    # The admin's own delete page leads to the confirmation of the real deletion.
    delete_page = ops_client.get(reverse("admin:waha_wahacontainer_delete", args=[container.pk]))
    assert delete_page.url == action_url(container, "delete")
    confirm = ops_client.get(action_url(container, "delete"))
    assert 'name="volume"' in confirm.content.decode()

    # A suspended tenant's container is not started: the worker refuses and the page says why.
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    manager.stop_container(container)
    response = ops_client.post(action_url(container, "start"), follow=True)
    [refused] = entries("container.start")
    with translation.override(settings.LANGUAGE_CODE):  # the worker's language
        reason = translation.gettext("The tenant is suspended: reactivate it before starting its containers.")
    assert refused.status == AuditLog.Status.FAILED and refused.error == reason
    assert docker_status(docker_client, container) == "exited"
    assert any(reason in text for text in messages_of(response))

    response = ops_client.post(action_url(container, "delete"), {"post": "yes", "volume": "on"}, follow=True)
    [deleted] = entries("container.delete")
    assert deleted.status == AuditLog.Status.SUCCEEDED, deleted.error
    assert deleted.detail["volume_removed"] is True and deleted.target_repr == container.name
    assert response.request["PATH_INFO"] == reverse("admin:waha_wahacontainer_changelist")
    with scopes_disabled():
        assert not WahaContainer.objects.filter(pk=container.pk).exists()
    names = [c.name for c in docker_client.containers.list(all=True)]
    assert container.name not in names
    assert volume not in [v.name for v in docker_client.volumes.list()]


def test_orphan_cleanup_from_the_admin(ops_worker, ops_client, make_tenant, docker_client, simulator_image):
    orphan = docker_client.containers.run(
        simulator_image,
        name=f"whago-{manager.instance_slug()}-waha-orphan-ops",
        labels={"whago.service": "waha", "whago.instance": settings.WHAGO_INSTANCE, "whago.tenant": "0"},
        environment={"WHATSAPP_API_PORT": str(manager.port_range()[-1])},
        network_mode="host",
        detach=True,
    )
    tenant = make_tenant()
    lost = manager.ensure_container(tenant)
    docker_client.containers.get(lost.runtime_id).remove(force=True)

    url = reverse("admin:waha_wahacontainer_orphans")
    assert ops_client.get(reverse("admin:waha_wahacontainer_changelist")).content.decode().count(url) == 1
    confirm = ops_client.get(url)
    assert confirm.status_code == 200 and entries("orphans.cleanup") == []
    assert orphan.name in [c.name for c in docker_client.containers.list(all=True)]

    response = ops_client.post(url, {}, follow=True)
    [cleanup] = entries("orphans.cleanup")
    assert cleanup.status == AuditLog.Status.SUCCEEDED, cleanup.error
    assert cleanup.detail["removed"] == [orphan.name]
    assert cleanup.detail["recreated"] == [lost.name]
    assert orphan.name not in [c.name for c in docker_client.containers.list(all=True)]
    with scopes_disabled():
        lost.refresh_from_db()
    assert docker_status(docker_client, lost) == "running"
    assert any(cleanup.result in text for text in messages_of(response))


def test_log_tail_is_read_by_the_worker(ops_worker, ops_client, make_tenant):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    logs_url = reverse("admin:waha_wahacontainer_logs", args=[container.pk])

    fragment = ops_client.get(logs_url, {"tail": 5}, HTTP_HX_REQUEST="true")

    assert fragment.status_code == 200
    text = fragment.content.decode()
    assert 'class="ops-log"' in text, text
    assert "listening on" in text  # the simulator's start-up line, read from the engine by the worker
    # The page asks for it with htmx, without a reload.
    page = ops_client.get(reverse("admin:waha_wahacontainer_change", args=[container.pk])).content.decode()
    assert f'hx-get="{logs_url}"' in page
