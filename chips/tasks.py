"""Celery tasks of the chips app: thin wrappers around services."""
from celery import shared_task

from . import outgoing


@shared_task(acks_late=True)
def deliver_webhook(delivery_id: int) -> None:
    """Send one outgoing webhook; schedules its own retry with backoff when it fails."""
    wait = outgoing.attempt_delivery(delivery_id)
    if wait is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=wait)
