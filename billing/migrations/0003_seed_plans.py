from decimal import Decimal

from django.db import migrations

PLANS = [
    # code, name, price, chips, per day, per month, order
    ("FREE", "Free", Decimal("0.00"), 1, 100, 1_000, 0),
    ("BUSINESS", "Business", Decimal("197.00"), 3, 2_000, 30_000, 1),
    ("ENTERPRISE", "Enterprise", Decimal("597.00"), 10, 10_000, 200_000, 2),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, name, price, chips, day, month, order in PLANS:
        Plan.objects.update_or_create(
            code=code,
            defaults=dict(
                name=name,
                price_brl=price,
                max_chips=chips,
                messages_per_day=day,
                messages_per_month=month,
                sort_order=order,
            ),
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
