import socket

from celery import shared_task
from django.utils import timezone

from .models import WorkerHeartbeat


@shared_task
def ping(token: str) -> None:
    """Answer a heartbeat: proves a worker process picks tasks from the broker."""
    WorkerHeartbeat.objects.filter(token=token, answered_at__isnull=True).update(
        answered_at=timezone.now(), worker=socket.gethostname()
    )
