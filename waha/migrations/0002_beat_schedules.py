"""Beat schedules of the ops sweeps (django-celery-beat's database scheduler).

Now declared in CELERY_BEAT_SCHEDULE (whago/settings.py): beat's DatabaseScheduler writes it into
django-celery-beat's tables under the same name. Kept, empty, so existing databases migrate.
"""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("waha", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
