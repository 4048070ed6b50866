"""Suspending a tenant from the admin: sessions stop, API keys refused, data kept; then reactivation.

End to end: a chip WORKING in a simulator container on Docker, a real worker, webhooks to
the live app.
"""
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from chips.models import Chip, Message
from tests.chips.conftest import chip_row, set_plan, sim_of, wait_chip, working_chip
from tests.conftest import confirm_email
from waha.models import ContainerStatus, SessionStatus, WahaContainer, WahaSession
from whago import services
from whago.models import ApiKey, AuditLog, Tenant

from .conftest import messages_of, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def audit_rows(action: str) -> list[AuditLog]:
    with scopes_disabled():
        return list(AuditLog.objects.filter(action=action).order_by("pk"))


def test_suspend_and_reactivate_a_tenant(ops_worker, ops_client, client_factory, docker_client):
    owner, tenant = services.sign_up(email="dona@padaria.com.br", password="Fermento-Natural-2026",
                                     full_name="Dona Maria", company="Padaria Central")
    _other_owner, other = services.sign_up(email="dono@mercado.com.br", password="Fermento-Natural-2026",
                                           full_name="Seu José", company="Mercado Vizinho")
    confirm_email(owner)
    set_plan(tenant, "BUSINESS")
    chip = working_chip(tenant)
    sim_of(chip).inbound(chip.session_name, "5511987654321", "Bom dia!")
    wait_for(lambda: Message.objects.with_scopes_disabled().filter(chip=chip).exists(), timeout=20)
    _key, raw_key = services.create_api_key(tenant=tenant, name="ERP", created_by=owner)
    api = client_factory()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    assert api.get(reverse("api_me"), **bearer).status_code == 200
    member = client_factory()
    member.force_login(owner)
    assert member.get(reverse("dashboard")).status_code == 200
    with scopes_disabled():
        container = WahaContainer.objects.get(tenant=tenant)
        messages_before = Message.objects.filter(tenant=tenant).count()

    # Suspend from the tenant list: a confirmation page first, with the consequences.
    changelist = reverse("admin:whago_tenant_changelist")
    listing = ops_client.get(changelist).content.decode()
    assert "Padaria Central" in listing and "BUSINESS" in listing.upper()
    selection = {"action": "suspend_selected", "_selected_action": [tenant.pk]}
    confirm = ops_client.post(changelist, {**selection, "index": 0})
    assert confirm.status_code == 200 and 'name="reason"' in confirm.content.decode()
    tenant.refresh_from_db()
    assert tenant.is_active
    response = ops_client.post(changelist, {**selection, "post": "yes", "reason": "Pagamento em atraso"},
                               follow=True)
    assert any("Padaria Central" in text for text in messages_of(response))

    tenant.refresh_from_db()
    assert not tenant.is_active and tenant.suspension_reason == "Pagamento em atraso"
    refused = api.get(reverse("api_me"), **bearer)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "tenant_suspended"
    assert "Pagamento em atraso" in refused.json()["error"]["message"]
    page = member.get(reverse("dashboard"), follow=True)
    assert f'id="suspended-{tenant.pk}"' in page.content.decode() and "Pagamento em atraso" in page.content.decode()
    # The worker stops the session (the chip hears it by webhook) and then the container.
    wait_chip(chip.pk, Chip.Status.STOPPED, timeout=40)
    wait_for(lambda: docker_client.containers.get(container.runtime_id).status == "exited", timeout=40)
    [suspended] = audit_rows("tenant.suspend")
    assert suspended.actor == ops_client.user and suspended.tenant_id == tenant.pk
    [stopped] = wait_for(lambda: [e for e in audit_rows("container.suspend") if e.is_finished], timeout=30)
    assert stopped.status == AuditLog.Status.SUCCEEDED, stopped.error
    assert stopped.detail["stopped_sessions"] == [chip.session_name]
    with scopes_disabled():
        session = WahaSession.objects.get(container=container)
        assert session.status == SessionStatus.STOPPED and session.should_run
        assert WahaContainer.objects.get(pk=container.pk).status == ContainerStatus.STOPPED
        # Nothing was deleted.
        assert Message.objects.filter(tenant=tenant).count() == messages_before
        assert ApiKey.objects.get(tenant=tenant).revoked_at is None
        assert Chip.objects.filter(tenant=tenant).count() == 1
    # Another tenant is untouched.
    other.refresh_from_db()
    assert other.is_active
    # Suspending again changes nothing.
    ops_client.post(reverse("admin:whago_tenant_suspend", args=[tenant.pk]), {"reason": "again"})
    assert len(audit_rows("tenant.suspend")) == 1

    # Reactivate from the tenant's page: the portal, the API and the session come back.
    change_page = ops_client.get(reverse("admin:whago_tenant_change", args=[tenant.pk])).content.decode()
    assert 'id="tenant-reactivate"' in change_page
    ops_client.post(reverse("admin:whago_tenant_reactivate", args=[tenant.pk]), follow=True)
    tenant.refresh_from_db()
    assert tenant.is_active and tenant.suspended_at is None
    assert api.get(reverse("api_me"), **bearer).status_code == 200
    assert member.get(reverse("dashboard")).status_code == 200
    wait_for(lambda: docker_client.containers.get(container.runtime_id).status == "running", timeout=40)
    resumed = wait_for(lambda: [e for e in audit_rows("container.resume") if e.is_finished], timeout=60)
    assert resumed[0].status == AuditLog.Status.SUCCEEDED, resumed[0].error
    wait_chip(chip.pk, Chip.Status.WORKING, timeout=40)
    assert chip_row(chip.pk).phone == chip.phone
    with scopes_disabled():
        assert Tenant.objects.get(pk=tenant.pk).is_active
