"""Beat schedules of the ops sweeps (django-celery-beat's database scheduler)."""
from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("waha: health sweep", "waha.tasks.health_sweep", 30),
    ("waha: stats sweep", "waha.tasks.stats_sweep", 60),
    ("waha: alert rules", "waha.tasks.alert_sweep", 60),
    ("waha: orphan cleanup", "waha.tasks.cleanup_orphans", 3600),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, seconds in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )
    # Tell a running beat that the schedule changed.
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("waha", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
