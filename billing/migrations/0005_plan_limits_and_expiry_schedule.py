"""Limits of the seeded plans (this migration also created the beat schedule that expires prepaid
plan periods: now declared in CELERY_BEAT_SCHEDULE, whago/settings.py, under the same name)."""
from decimal import Decimal

from django.db import migrations

# code: campaigns at once, recipients per campaign, API access, container memory (MB), CPUs.
# Memory follows WAHA's own sizing (NOWEB: ~200 MB for 1 session, ~2 GB for 10).
LIMITS = {
    "FREE": (1, 500, False, 512, Decimal("0.50")),
    "BUSINESS": (10, 10_000, True, 1024, Decimal("1.00")),
    "ENTERPRISE": (50, 100_000, True, 2048, Decimal("2.00")),
}


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, (campaigns, recipients, api, memory, cpus) in LIMITS.items():
        Plan.objects.filter(code=code).update(
            max_active_campaigns=campaigns, max_campaign_recipients=recipients, api_access=api,
            container_memory_mb=memory, container_cpus=cpus,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_plan_limits_payments_ledger"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
