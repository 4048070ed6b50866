"""The Celery application: one worker process runs every background task of WHAGO."""
import os
import socket

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "whago.settings")

app = Celery("whago")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def patient_publish_policy(seconds: float) -> dict:
    """A publish retry policy that keeps trying for about `seconds`: 0, 0.5, 1, 1.5, then every 2 s."""
    steps = [0.0, 0.5, 1.0, 1.5]
    retries = len(steps) + max(0, int((seconds - sum(steps)) // 2))
    return {"max_retries": retries, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}


@signals.worker_init.connect
def _patient_publishing(sender, **kwargs):
    """In the worker only, a task that publishes while the broker restarts (a campaign lane's next
    slice, a retry with backoff) waits up to WORKER_PUBLISH_RETRY_SECONDS for it instead of failing.
    Web processes keep Celery's default policy (three tries in under a second): a request fails fast, 503."""
    from django.conf import settings

    seconds = settings.WORKER_PUBLISH_RETRY_SECONDS
    sender.app.conf.task_publish_retry_policy = patient_publish_policy(seconds)
    # A publisher whose connection died opens a new one within this bound (kombu's failover
    # timeout; Celery's default, 4 s, is shorter than a Redis restart).
    sender.app.conf.broker_connection_timeout = seconds


@signals.worker_ready.connect
def _worker_heartbeat(sender, **kwargs):
    from . import heartbeats

    heartbeats.start(heartbeats.Role.WORKER, sender.hostname)


@signals.beat_init.connect
def _beat_heartbeat(sender, **kwargs):
    from . import heartbeats

    heartbeats.start(heartbeats.Role.BEAT, f"beat@{socket.gethostname()}")
