import socket

from celery import shared_task
from django.utils import timezone

from . import heartbeats
from .models import WorkerHeartbeat


@shared_task(bind=True)
def ping(self, token: str) -> None:
    """Answer a heartbeat: proves a worker process picks tasks from the broker (and counts as its heartbeat)."""
    WorkerHeartbeat.objects.filter(token=token, answered_at__isnull=True).update(
        answered_at=timezone.now(), worker=socket.gethostname()
    )
    if self.request.hostname:
        heartbeats.beat(heartbeats.Role.WORKER, self.request.hostname)
