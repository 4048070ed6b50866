"""The Celery application: one worker process runs every background task of WHAGO."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "whago.settings")

app = Celery("whago")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
