"""billing.limits: what other apps ask, and the message quota under concurrency."""
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import translation
from django_scopes import scope, scopes_disabled

from billing import limits
from billing.models import CreditLedger, Plan, Reservation, Subscription, UsageCounter

from .conftest import plan

pytestmark = pytest.mark.django_db


def give_credits(tenant, n):
    with scopes_disabled():
        CreditLedger.objects.create(tenant=tenant, amount=n, reason=CreditLedger.Reason.ADJUSTMENT)


def set_plan(tenant, code, status=Subscription.Status.ACTIVE):
    with scopes_disabled():
        Subscription.objects.filter(tenant=tenant).update(plan=plan(code), status=status)


def test_seeded_plans_keep_their_codes_and_chip_limits():
    assert {p.code: p.max_chips for p in Plan.objects.all()} == {"FREE": 1, "BUSINESS": 3, "ENTERPRISE": 10}
    assert plan("FREE").price_brl == 0
    assert not plan("FREE").api_access and plan("BUSINESS").api_access
    assert plan("ENTERPRISE").container_memory_mb > plan("FREE").container_memory_mb


def test_limits_follow_the_plan_in_force(make_owner):
    _, tenant = make_owner()
    assert limits.chip_limit(tenant) == 1
    assert limits.can_create_chip(tenant, 0) and not limits.can_create_chip(tenant, 1)
    assert not limits.has_api_access(tenant)
    set_plan(tenant, "ENTERPRISE")
    assert limits.chip_limit(tenant) == 10
    assert limits.can_create_chip(tenant, 9) and not limits.can_create_chip(tenant, 10)
    assert limits.has_api_access(tenant)
    assert limits.campaign_limit(tenant) == 50 and limits.can_start_campaign(tenant, 49)
    assert not limits.can_start_campaign(tenant, 50)
    assert limits.container_resources(tenant) == limits.ContainerResources(memory_mb=2048, cpus=plan("ENTERPRISE")
                                                                           .container_cpus)
    # A canceled subscription keeps its row but the FREE limits apply.
    set_plan(tenant, "ENTERPRISE", status=Subscription.Status.CANCELED)
    assert limits.chip_limit(tenant) == 1 and not limits.has_api_access(tenant)


def test_limits_work_inside_another_tenants_scope(make_owner):
    _, tenant_a = make_owner()
    _, tenant_b = make_owner()
    set_plan(tenant_b, "BUSINESS")
    with scope(tenant=tenant_a):
        assert limits.chip_limit(tenant_b) == 3
        assert limits.chip_limit(tenant_a) == 1


def test_reserve_uses_the_plan_quota_then_credits(make_owner):
    _, tenant = make_owner()
    free = plan("FREE")
    limits.reserve_messages(tenant, free.messages_per_day - 2)
    give_credits(tenant, 5)
    quota = limits.remaining_quota(tenant)
    assert quota["day_left"] == 2 and quota["credits"] == 5 and quota["sendable"] == 7
    assert limits.can_send(tenant, 7) and not limits.can_send(tenant, 8)

    reservation = limits.reserve_messages(tenant, 4)
    assert (reservation.from_plan, reservation.from_credits) == (2, 2)
    assert limits.credit_balance(tenant) == 3
    assert limits.remaining_quota(tenant)["day_used"] == free.messages_per_day


def test_quota_exceeded_counts_nothing_and_speaks_portuguese(make_owner):
    _, tenant = make_owner()
    limits.reserve_messages(tenant, plan("FREE").messages_per_day - 3)
    give_credits(tenant, 2)
    before = limits.remaining_quota(tenant)
    with translation.override("pt-br"), pytest.raises(limits.QuotaExceeded) as caught:
        limits.reserve_messages(tenant, 6)
    assert caught.value.requested == 6 and caught.value.available == 5
    assert "Cota de mensagens" in caught.value.message
    assert limits.remaining_quota(tenant) == before
    with scopes_disabled():
        assert Reservation.objects.filter(tenant=tenant).count() == 1


def test_release_gives_back_credits_first_then_quota(make_owner):
    _, tenant = make_owner()
    free = plan("FREE")
    limits.reserve_messages(tenant, free.messages_per_day - 3)
    give_credits(tenant, 10)
    reservation = limits.reserve_messages(tenant, 8)  # 3 from the plan, 5 from credits
    assert limits.credit_balance(tenant) == 5

    assert reservation.release(4) == 4  # 4 credits back
    assert limits.credit_balance(tenant) == 9
    assert limits.remaining_quota(tenant)["day_left"] == 0
    assert reservation.release() == 4  # 1 credit + 3 quota
    assert limits.credit_balance(tenant) == 10
    assert limits.remaining_quota(tenant)["day_left"] == 3
    assert reservation.release() == 0  # nothing outstanding: no double refund


def test_release_messages_without_the_reservation(make_owner):
    _, tenant = make_owner()
    limits.reserve_messages(tenant, 5)
    limits.reserve_messages(tenant, 3)
    assert limits.release_messages(tenant, 4) == 4
    assert limits.remaining_quota(tenant)["day_used"] == 4
    assert limits.release_messages(tenant, 100) == 4
    assert limits.remaining_quota(tenant)["day_used"] == 0


def test_monthly_quota_also_binds(make_owner):
    _, tenant = make_owner()
    free = plan("FREE")
    with scopes_disabled():
        month = limits._periods()[1]
        UsageCounter.objects.create(tenant=tenant, period="month", starts_on=month, used=free.messages_per_month - 1)
    limits.reserve_messages(tenant, 1)
    with pytest.raises(limits.QuotaExceeded):
        limits.reserve_messages(tenant, 1)


def test_the_ledger_is_append_only(make_owner):
    _, tenant = make_owner()
    give_credits(tenant, 10)
    with scopes_disabled():
        entry = CreditLedger.objects.get(tenant=tenant)
    entry.amount = 1000
    with translation.override("en"), pytest.raises(ValidationError, match="cannot be changed"):
        entry.save()
    with translation.override("en"), pytest.raises(ValidationError, match="cannot be deleted"):
        entry.delete()
    assert limits.credit_balance(tenant) == 10


def _race(tenant, threads: int) -> tuple[list, list]:
    ok, refused = [], []
    barrier = threading.Barrier(threads)

    def reserve():
        try:
            barrier.wait()
            limits.reserve_messages(tenant, 1)
            ok.append(1)
        except limits.QuotaExceeded:
            refused.append(1)
        finally:
            connection.close()

    workers = [threading.Thread(target=reserve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return ok, refused


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_on_ten_left_exactly_ten_succeed(make_owner):
    _, tenant = make_owner()
    limits.reserve_messages(tenant, plan("FREE").messages_per_day - 10)
    ok, refused = _race(tenant, 20)
    assert (len(ok), len(refused)) == (10, 10)
    quota = limits.remaining_quota(tenant)
    assert quota["day_used"] == plan("FREE").messages_per_day and quota["day_left"] == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_overspend_credits(make_owner):
    _, tenant = make_owner()
    limits.reserve_messages(tenant, plan("FREE").messages_per_day - 4)
    give_credits(tenant, 6)
    ok, refused = _race(tenant, 20)
    assert (len(ok), len(refused)) == (10, 10)
    assert limits.credit_balance(tenant) == 0
