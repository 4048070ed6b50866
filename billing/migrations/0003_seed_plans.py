"""Seeded the default plans; they are now created by billing.plans.seed_after_migrate (a post_migrate
receiver: missing plans only, so a flushed test database has them and an operator's edits stay).
Kept, empty, so existing databases migrate."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
