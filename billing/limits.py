"""What a tenant may do: the one place other apps ask (billing never reads their tables).

Usage billing needs is either given by the caller (chips in use, active campaigns) or
recorded through this module (messages, by reserve_messages). Every function works
inside or outside a tenant scope and takes the tenant explicitly.

Chips and containers
    chip_limit(tenant) -> int
    can_create_chip(tenant, chips_in_use: int) -> bool
        Call it while holding your own lock on the tenant row, with the count you read
        under that lock.
    container_resources(tenant) -> ContainerResources(memory_mb: int, cpus: Decimal)

API and campaigns
    has_api_access(tenant) -> bool
    campaign_limit(tenant) -> int            (campaigns running at once; 0 = none)
    can_start_campaign(tenant, active_campaigns: int) -> bool
    campaign_recipient_limit(tenant) -> int

Messages (daily and monthly quota of the plan, then message credits)
    reserve_messages(tenant, n) -> Reservation
        Atomic check-and-count, serialised per tenant by a row lock: counts n against
        today's and this month's quota; what the quota does not cover is spent from the
        credit ledger. Raises QuotaExceeded (message in the user's language) when
        neither covers n; nothing is counted then.
    Reservation.release(n=None) / release_reservation(reservation, n=None) -> int
        Give back messages reserved but never sent (credits are refunded first).
    release_messages(tenant, n) -> int
        Same, without the reservation object: the newest outstanding reservations first.
    can_send(tenant, n=1) -> bool          (a check only; reserves nothing)
    remaining_quota(tenant) -> dict        (for meters; keys documented on the function)
    credit_balance(tenant) -> int

The plan in force is the subscription's while it is trialing, active or past due,
the FREE plan's otherwise (canceled, or no subscription at all).
"""
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django_scopes import scope

from whago.models import Tenant

from .models import CreditLedger, Plan, Reservation, Subscription, UsageCounter, lock_tenant_billing


class QuotaExceeded(Exception):
    """The plan's quota and the credit balance together do not cover the messages asked for."""

    def __init__(self, message: str, *, requested: int, available: int):
        super().__init__(message)
        self.message = message
        self.requested = requested
        self.available = available


@dataclass(frozen=True)
class ContainerResources:
    memory_mb: int
    cpus: Decimal


def _free_plan() -> Plan:
    return Plan.objects.get(code=Plan.FREE)


def current_plan(tenant: Tenant) -> Plan:
    """The plan whose limits apply to the tenant now."""
    with scope(tenant=tenant.pk):
        subscription = Subscription.objects.select_related("plan").filter(tenant_id=tenant.pk).first()
    if subscription is not None and subscription.in_force:
        return subscription.plan
    return _free_plan()


def chip_limit(tenant: Tenant) -> int:
    """How many chips the tenant's plan allows."""
    return current_plan(tenant).max_chips


def can_create_chip(tenant: Tenant, chips_in_use: int) -> bool:
    """Whether one more chip fits in the plan, given the chips the caller counted."""
    return chips_in_use < chip_limit(tenant)


def has_api_access(tenant: Tenant) -> bool:
    """Whether the tenant's plan includes the REST API."""
    return current_plan(tenant).api_access


def campaign_limit(tenant: Tenant) -> int:
    """How many campaigns may run at once (0: campaigns are not in the plan)."""
    return current_plan(tenant).max_active_campaigns


def can_start_campaign(tenant: Tenant, active_campaigns: int) -> bool:
    """Whether one more campaign may run, given the running ones the caller counted."""
    return active_campaigns < campaign_limit(tenant)


def campaign_recipient_limit(tenant: Tenant) -> int:
    """The most recipients one campaign may have."""
    return current_plan(tenant).max_campaign_recipients


def on_free_plan(tenant: Tenant) -> bool:
    """Whether the FREE plan's limits apply to the tenant now (False where no plan is set up)."""
    try:
        return current_plan(tenant).is_free
    except Plan.DoesNotExist:
        return False


def container_resources(tenant: Tenant) -> ContainerResources | None:
    """Memory and CPU limits of the tenant's WAHA container; None where no plan is set up at all
    (a bare database: the runtime's own defaults apply)."""
    try:
        plan = current_plan(tenant)
    except Plan.DoesNotExist:
        return None
    return ContainerResources(memory_mb=plan.container_memory_mb, cpus=plan.container_cpus)


def credit_balance(tenant: Tenant) -> int:
    """Message credits left: the sum of the tenant's ledger."""
    with scope(tenant=tenant.pk):
        total = CreditLedger.objects.filter(tenant_id=tenant.pk).aggregate(s=Sum("amount"))["s"]
    return total or 0


def _periods() -> tuple:
    today = timezone.localdate()
    return today, today.replace(day=1)


def _used(tenant: Tenant, period: str, starts_on) -> int:
    with scope(tenant=tenant.pk):
        row = UsageCounter.objects.filter(tenant_id=tenant.pk, period=period, starts_on=starts_on).first()
    return row.used if row else 0


def remaining_quota(tenant: Tenant) -> dict:
    """Quota meters: plan, day/month limit, used and left, credits and total sendable now."""
    plan = current_plan(tenant)
    today, month = _periods()
    day_used = _used(tenant, UsageCounter.Period.DAY, today)
    month_used = _used(tenant, UsageCounter.Period.MONTH, month)
    day_left = max(0, plan.messages_per_day - day_used)
    month_left = max(0, plan.messages_per_month - month_used)
    credits = credit_balance(tenant)
    return {
        "plan": plan.code,
        "day_limit": plan.messages_per_day,
        "day_used": day_used,
        "day_left": day_left,
        "month_limit": plan.messages_per_month,
        "month_used": month_used,
        "month_left": month_left,
        "credits": credits,
        "sendable": min(day_left, month_left) + credits,
    }


def can_send(tenant: Tenant, n: int = 1) -> bool:
    """Whether n messages fit in the quota plus credits now (reserves nothing)."""
    return n <= remaining_quota(tenant)["sendable"]


def _counter(tenant: Tenant, period: str, starts_on) -> UsageCounter:
    counter, _created = UsageCounter.objects.get_or_create(tenant_id=tenant.pk, period=period, starts_on=starts_on)
    return counter


def _quota_message(requested: int, available: int) -> str:
    return _(
        "Message quota exceeded: %(requested)s message(s) requested, %(available)s left today "
        "including credits. Buy credits or upgrade your plan on the Billing page."
    ) % {"requested": requested, "available": available}


def reserve_messages(tenant: Tenant, n: int) -> Reservation:
    """Count n messages against the quota (then credits) atomically, or raise QuotaExceeded."""
    if n <= 0:
        raise ValueError("n must be positive")
    today, month = _periods()
    with transaction.atomic(), scope(tenant=tenant.pk):
        lock_tenant_billing(tenant.pk)
        plan = current_plan(tenant)
        month_counter = _counter(tenant, UsageCounter.Period.MONTH, month)
        day_counter = _counter(tenant, UsageCounter.Period.DAY, today)
        plan_left = max(0, min(plan.messages_per_day - day_counter.used, plan.messages_per_month - month_counter.used))
        from_plan = min(n, plan_left)
        from_credits = n - from_plan
        if from_credits:
            balance = CreditLedger.objects.filter(tenant_id=tenant.pk).aggregate(s=Sum("amount"))["s"] or 0
            if from_credits > balance:
                raise QuotaExceeded(_quota_message(n, plan_left + balance), requested=n, available=plan_left + balance)
            CreditLedger.objects.create(
                tenant_id=tenant.pk, amount=-from_credits, reason=CreditLedger.Reason.SPEND,
                note=f"{from_credits} message(s)",
            )
        if from_plan:
            UsageCounter.objects.filter(pk__in=[day_counter.pk, month_counter.pk]).update(used=F("used") + from_plan)
        return Reservation.objects.create(
            tenant_id=tenant.pk, day=today, quantity=n, from_plan=from_plan, from_credits=from_credits
        )


def release_reservation(reservation: Reservation, n: int | None = None) -> int:
    """Give back up to n unsent messages of a reservation (all outstanding by default)."""
    return reservation.release(n)


def release_messages(tenant: Tenant, n: int) -> int:
    """Give back n unsent messages, from the newest outstanding reservations; returns how many."""
    if n <= 0:
        return 0
    given = 0
    with transaction.atomic(), scope(tenant=tenant.pk):
        lock_tenant_billing(tenant.pk)
        open_reservations = (
            Reservation.objects.select_for_update()
            .filter(tenant_id=tenant.pk, released__lt=F("quantity"))
            .order_by("-pk")
        )
        for reservation in open_reservations:
            given += reservation.release_locked(n - given)
            if given >= n:
                break
    return given
