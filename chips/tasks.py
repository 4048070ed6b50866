"""Celery tasks of the chips app: thin wrappers around services."""
from celery import shared_task
from django.conf import settings

from proxies.services import ProxyUnavailable
from waha import manager
from waha.client import WahaError
from waha.manager import WahaManagerError
from waha.runtime import RuntimeFailure
from waha.tasks import TRANSIENT

from . import inbound_media, outgoing, services

PROVISION_RETRIES = 5
# What may come back by itself: the Docker engine or a server unreachable, no room left. The chip
# stays PROVISIONING (the tenant sees that WHAGO keeps trying); the task retries with backoff,
# then provision_sweep takes over until CHIPS_PROVISION_TIMEOUT_MINUTES.
WAITING = (*TRANSIENT, RuntimeFailure, manager.PortRangeExhausted, manager.NoServerWithRoom)


@shared_task(acks_late=True)
def deliver_webhook(delivery_id: int) -> None:
    """Send one outgoing webhook; schedules its own retry with backoff when it fails."""
    wait = outgoing.attempt_delivery(delivery_id)
    if wait is not None:
        deliver_webhook.apply_async((delivery_id,), countdown=wait)


@shared_task(expires=50)
def redeliver_webhooks() -> int:
    """Beat: queue again the deliveries whose task was lost (outgoing.overdue_deliveries)."""
    overdue = outgoing.overdue_deliveries()
    for delivery_id in overdue:
        deliver_webhook.delay(delivery_id)
    return len(overdue)


@shared_task(expires=3000)
def prune_webhook_deliveries() -> int:
    """Beat: delete the delivery log older than CHIPS_WEBHOOK_DELIVERY_RETENTION_DAYS (pending retries kept)."""
    return outgoing.prune_deliveries()


@shared_task(bind=True, acks_late=True, max_retries=PROVISION_RETRIES)
def provision_chip(self, chip_id: int) -> None:
    """Create the chip's WAHA session (and the tenant's container when needed)."""
    try:
        services.provision(chip_id)
    except WAITING as exc:
        services.provision_problem(chip_id, exc, final=False)
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 120))
    except (WahaError, WahaManagerError) as exc:
        services.provision_problem(chip_id, exc, final=True)


@shared_task
def provision_sweep() -> dict:
    """Provisioning that stopped half-way (its task gave up, or died with its worker) is tried
    again; past CHIPS_PROVISION_TIMEOUT_MINUTES the chip fails with what to do."""
    failed = services.fail_stale_provisioning()
    waiting = services.stalled_provisioning()
    for chip_id in waiting:
        provision_chip.delay(chip_id)
    return {"retried": len(waiting), "failed": failed}


@shared_task(acks_late=True)
def send_message(message_id: int) -> None:
    """Send one queued message; schedules its own retry with backoff while the chip cannot send."""
    wait = services.deliver(message_id)
    if wait is not None:
        send_message.apply_async((message_id,), countdown=wait)


@shared_task(acks_late=True)
def send_messages(message_ids: list[int]) -> None:
    """Send several queued messages one after another (each exactly once, as send_message does)."""
    for message_id, wait in services.deliver_many(message_ids).items():
        send_message.apply_async((message_id,), countdown=wait)


@shared_task(autoretry_for=TRANSIENT, retry_backoff=5, retry_kwargs={"max_retries": 3})
def stop_chip(chip_id: int) -> None:
    """Stop the session of a chip the plan limit suspended."""
    services.stop_chip_session(chip_id)


@shared_task(autoretry_for=(*TRANSIENT, ProxyUnavailable), retry_backoff=5, retry_kwargs={"max_retries": 5})
def reapply_proxy(session_name: str) -> None:
    """Give a chip's session its new proxy after the proxies app moved it."""
    services.reapply_proxy(session_name)


@shared_task(expires=240)
def requeue_stale_messages() -> int:
    """Beat: give a new task to queued messages whose task was lost."""
    return services.requeue_stale()


# --- campaigns (chips/dispatch.py) ---------------------------------------------------------------


@shared_task(acks_late=True)
def run_campaign_lane(campaign_id: int, chip_id: int, token: str) -> None:
    """Send a running campaign's recipients through one chip for one slice of time."""
    from . import dispatch

    dispatch.run_lane(campaign_id, chip_id, token)


@shared_task(expires=30)
def kick_campaigns() -> dict:
    """Beat: start scheduled campaigns, take over the work of dead workers, complete finished campaigns."""
    from . import dispatch

    return dispatch.kick()


# --- received files (chips/inbound_media.py) ------------------------------------------------------

INBOUND_MEDIA_RETRIES = 5


@shared_task(bind=True, acks_late=True, max_retries=INBOUND_MEDIA_RETRIES)
def fetch_inbound_media(self, message_id: int, url: str) -> str:
    """Download a received message's file from its chip's WAHA server (retried with backoff while the
    server does not answer; then the thread says the file is not available)."""
    try:
        return inbound_media.download(message_id, url)
    except inbound_media.Transient as exc:
        if self.request.retries < self.max_retries:
            wait = min(settings.CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS * 2**self.request.retries, 300)
            raise self.retry(exc=exc, countdown=wait) from exc
        inbound_media.give_up(message_id)
        return inbound_media.UNAVAILABLE
