"""The plans every installation starts with, seeded after `migrate` (and after `flush`).

A `post_migrate` receiver (connected in BillingConfig.ready) creates the plans that are missing and
leaves the existing ones alone: an operator's edits in the admin (prices, limits, names) are never
overwritten, and a plan an operator deleted comes back only with the default values. Seeding here
rather than in a data migration means a flushed database (the transactional tests) has the plans too.
"""
from decimal import Decimal

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, router

_FIELDS = ("name", "price_brl", "max_chips", "messages_per_day", "messages_per_month", "max_active_campaigns",
           "max_campaign_recipients", "api_access", "container_memory_mb", "container_cpus", "sort_order")
# Memory follows WAHA's own sizing (NOWEB: ~200 MB for 1 session, ~2 GB for 10).
PLANS = {
    code: dict(zip(_FIELDS, values, strict=True))
    for code, values in {
        "FREE": ("Free", Decimal("0.00"), 1, 100, 1_000, 1, 500, False, 512, Decimal("0.50"), 0),
        "BUSINESS": ("Business", Decimal("197.00"), 3, 2_000, 30_000, 10, 10_000, True, 1024, Decimal("1.00"), 1),
        "ENTERPRISE": (
            "Enterprise", Decimal("597.00"), 10, 10_000, 200_000, 50, 100_000, True, 2048, Decimal("2.00"), 2,
        ),
    }.items()
}


def seed_plans(using: str = DEFAULT_DB_ALIAS, apps=global_apps) -> list[str]:
    """Create the missing default plans; returns the codes created."""
    try:
        Plan = apps.get_model("billing", "Plan")
    except LookupError:  # billing migrated only part-way (migrate billing 0001)
        return []
    if not router.allow_migrate_model(using, Plan):
        return []
    fields = {f.name for f in Plan._meta.concrete_fields}
    existing = set(Plan.objects.using(using).filter(code__in=PLANS).values_list("code", flat=True))
    missing = [code for code in PLANS if code not in existing]
    Plan.objects.using(using).bulk_create(
        [Plan(code=code, **{k: v for k, v in PLANS[code].items() if k in fields}) for code in missing],
        ignore_conflicts=True,  # a concurrent migrate seeding the same plans
    )
    return missing


def seed_after_migrate(sender, using=DEFAULT_DB_ALIAS, apps=global_apps, plan=None, **kwargs) -> None:
    """post_migrate receiver (sender: billing's AppConfig)."""
    if plan and all(backwards for _migration, backwards in plan):
        return  # unapplying billing's migrations: its table may be gone
    seed_plans(using=using, apps=apps)
