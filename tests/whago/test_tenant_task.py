"""whago.tasks.TenantTask: a task queued for a tenant runs in that tenant's scope (pretix's EventTask)."""
import logging
from decimal import Decimal

import pytest
from celery import shared_task
from django_scopes import get_scope, scopes_disabled

from billing.models import Plan, Subscription
from tests.waiting import wait_until
from waha import tasks as waha_tasks
from waha.models import ContainerStatus, WahaContainer
from whago.models import Membership
from whago.tasks import TenantTask

pytestmark = pytest.mark.django_db


@shared_task(base=TenantTask, name="tests.whago.tenant_probe")
def tenant_probe(tenant, other_id: int, label: str = "") -> dict:
    """What a tenant task's body sees: its tenant, the active scope and the memberships it can read."""
    return {
        "tenant": tenant.pk,
        "scope": get_scope()["tenant"].pk,
        "label": label,
        "memberships": sorted(Membership.objects.values_list("tenant_id", flat=True)),
        "other_found": Membership.objects.filter(tenant_id=other_id).exists(),
    }


@pytest.fixture
def two_tenants(make_owner):
    return make_owner(company="Alfa")[1], make_owner(company="Beta")[1]


@pytest.mark.parametrize("how", ["tenant_id", "tenant", "positional"])
def test_the_body_runs_in_the_tenants_scope_and_sees_no_other_tenants_rows(two_tenants, how):
    alfa, beta = two_tenants
    if how == "positional":
        result = tenant_probe.apply(args=(alfa.pk, beta.pk), kwargs={"label": "x"})
    else:
        result = tenant_probe.apply(kwargs={how: alfa.pk, "other_id": beta.pk, "label": "x"})

    assert result.get() == {"tenant": alfa.pk, "scope": alfa.pk, "label": "x", "memberships": [alfa.pk],
                            "other_found": False}
    assert get_scope() == {}  # the scope ends with the task


def test_a_tenant_deleted_since_the_task_was_queued_ends_it_cleanly(two_tenants, caplog):
    alfa, beta = two_tenants
    gone = alfa.pk
    with scopes_disabled():
        alfa.delete()

    with caplog.at_level(logging.WARNING, logger="whago.tasks"):
        result = tenant_probe.apply(kwargs={"tenant_id": gone, "other_id": beta.pk})

    assert result.successful() and result.get() is None
    assert f"tenant {gone} no longer exists" in caplog.text


def test_a_tenant_task_queued_without_a_tenant_fails_saying_so():
    result = tenant_probe.apply(kwargs={"other_id": 1})
    assert result.failed()
    assert isinstance(result.result, TypeError) and "tenant_id=" in str(result.result)


def _containers(alfa, beta) -> tuple[WahaContainer, WahaContainer]:
    with scopes_disabled():
        Subscription.objects.filter(tenant=alfa).update(plan=Plan.objects.get(code="ENTERPRISE"))
        mine = WahaContainer.objects.create(tenant=alfa, name="whago-alfa", runtime="docker", port=21901,
                                            status=ContainerStatus.STOPPED, memory_mb=1, cpus=Decimal("0.1"))
        theirs = WahaContainer.objects.create(tenant=beta, name="whago-beta", runtime="docker", port=21902,
                                              status=ContainerStatus.STOPPED, memory_mb=1, cpus=Decimal("0.1"))
    return mine, theirs


def test_resize_containers_touches_only_the_tenants_own_containers(two_tenants):
    alfa, beta = two_tenants
    mine, theirs = _containers(alfa, beta)

    assert waha_tasks.resize_containers.apply(kwargs={"tenant_id": alfa.pk}).get() == ["whago-alfa"]

    with scopes_disabled():
        mine.refresh_from_db()
        theirs.refresh_from_db()
    assert (mine.memory_mb, mine.cpus) == (2048, Decimal("2.00"))
    assert (theirs.memory_mb, theirs.cpus) == (1, Decimal("0.10"))


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_tenant_task_queued_with_tenant_id(make_owner, celery_worker):
    alfa, beta = make_owner(company="Alfa")[1], make_owner(company="Beta")[1]
    mine, theirs = _containers(alfa, beta)

    waha_tasks.resize_containers.delay(tenant_id=987654321)  # a tenant that does not exist
    waha_tasks.resize_containers.delay(tenant_id=alfa.pk)

    def resized():
        with scopes_disabled():
            mine.refresh_from_db()
        return mine.memory_mb == 2048
    wait_until(resized, message="alfa's container resized by the worker")
    wait_until(lambda: "tenant 987654321 no longer exists" in celery_worker.log(), message="the missing tenant logged")
    with scopes_disabled():
        theirs.refresh_from_db()
    assert theirs.memory_mb == 1
