"""Container alerts: one e-mail to the operators per new alert, acknowledgement in the admin."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse
from django.utils import timezone, translation
from django_scopes import scopes_disabled

from waha import manager, tasks
from waha.models import AlertRule, AlertState, ContainerAlert, ContainerStatus, WahaContainer
from whago.models import AuditLog, Tenant, User

from .conftest import messages_of, wait_for

STRONG = "Zebra-Cachoeira-2026!"


def down_container(tenant: Tenant, minutes: int = 90, port: int = 21999) -> WahaContainer:
    """A container row that has been down for `minutes` (the alert rules read rows only)."""
    with scopes_disabled():
        return WahaContainer.objects.create(
            tenant=tenant, name=f"whago-alert-{port}", runtime="docker", port=port, status=ContainerStatus.STOPPED,
            down_since=timezone.now() - timedelta(minutes=minutes),
        )


def staff(email: str, *codenames: str) -> User:
    user = User.objects.create_user(email=email, password=STRONG, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="waha", codename__in=codenames))
    return user


@pytest.mark.django_db
def test_each_new_alert_is_mailed_once_to_the_operators_allowed_to_see_it(operator, make_owner, settings):
    settings.OPERATOR_EMAILS = []
    watcher = staff("watcher@whago.test", "view_containeralert")
    staff("billing@whago.test", "view_wahacontainer")  # staff, but not allowed to see alerts
    User.objects.create_user(email="quiet@whago.test", password=STRONG, is_staff=True, is_active=False,
                             is_superuser=True)
    owner, tenant = make_owner()
    container = down_container(tenant)

    manager.alert_sweep(orphans=[])
    manager.alert_sweep(orphans=[])

    [alert] = ContainerAlert.objects.filter(subject=container.name)
    assert (alert.rule, alert.state) == (AlertRule.STOPPED, AlertState.OPEN)
    [message] = mail.outbox
    assert sorted(message.to) == sorted([operator.email, watcher.email])
    assert owner.email not in message.to
    assert container.name in message.subject
    assert reverse("admin:waha_containeralert_change", args=[alert.pk]) in message.body

    # Back up: resolved. Down again later: a new alert, a new e-mail.
    WahaContainer.objects.with_scopes_disabled().filter(pk=container.pk).update(down_since=None)
    manager.alert_sweep(orphans=[])
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at is not None
    WahaContainer.objects.with_scopes_disabled().filter(pk=container.pk).update(
        down_since=timezone.now() - timedelta(hours=2)
    )
    manager.alert_sweep(orphans=[])
    assert ContainerAlert.objects.filter(subject=container.name).count() == 2
    assert len(mail.outbox) == 2

    # OPERATOR_EMAILS, when set, replaces the staff list.
    settings.OPERATOR_EMAILS = ["plantao@whago.test"]
    down_container(tenant, port=21998)
    manager.alert_sweep(orphans=[])
    assert mail.outbox[-1].to == ["plantao@whago.test"]


@pytest.mark.django_db
def test_a_suspended_tenants_stopped_containers_raise_no_alert(make_owner):
    _, tenant = make_owner()
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    container = down_container(tenant, minutes=600)

    manager.alert_sweep(orphans=[])

    assert not ContainerAlert.objects.filter(subject=container.name).exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_acknowledge_from_the_admin(ops_client, make_owner):
    _, tenant = make_owner()
    container = down_container(tenant)
    manager.alert_sweep(orphans=[])
    alert = ContainerAlert.objects.get(subject=container.name)
    changelist = reverse("admin:waha_containeralert_changelist")
    assert "● " in ops_client.get(changelist).content.decode()

    response = ops_client.post(changelist, {"action": "acknowledge", "_selected_action": [alert.pk], "index": 0},
                               follow=True)

    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    assert alert.acknowledged_by == ops_client.user and alert.acknowledged_at is not None
    with translation.override(settings.LANGUAGE_CODE):
        said = translation.ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", 1) % {"n": 1}
    assert said in messages_of(response)
    with scopes_disabled():
        entry = AuditLog.objects.get(action="alert.acknowledge")
    assert entry.actor == ops_client.user and entry.tenant_id == tenant.pk
    assert entry.status == AuditLog.Status.SUCCEEDED
    # Still down: the acknowledged alert stays the one alert, and nobody is mailed again.
    mails = len(mail.outbox)
    manager.alert_sweep(orphans=[])
    assert ContainerAlert.objects.filter(subject=container.name).count() == 1
    assert len(mail.outbox) == mails
    # The list filters by state.
    page = ops_client.get(changelist, {"state__exact": "acknowledged"})
    assert page.context["cl"].result_count == 1


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_the_workers_alert_sweep_mails_the_operators(celery_worker, operator, make_tenant):
    """The worker (embedded mode: console e-mail backend) prints one e-mail per new alert."""
    tenant = make_tenant()
    container = down_container(tenant)

    tasks.alert_sweep.delay()
    wait_for(lambda: ContainerAlert.objects.filter(subject=container.name).exists(), timeout=30)
    alert = ContainerAlert.objects.get(subject=container.name)
    link = reverse("admin:waha_containeralert_change", args=[alert.pk])
    wait_for(lambda: link in celery_worker.log(), timeout=15,
             message="the e-mail in the worker's console output")
    output = celery_worker.log()
    assert f"To: {operator.email}" in output
    assert f"{container.name} has been down since" in output
    tasks.alert_sweep.delay()
    tasks.alert_sweep.delay()
    wait_for(lambda: celery_worker.log().count("waha.tasks.alert_sweep[") >= 6, timeout=30)
    assert celery_worker.log().count("Subject:") == 1
