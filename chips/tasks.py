"""The chips app's Celery tasks, for autodiscovery: each is defined next to the code it runs and
imported here so that the worker registers it. Their names stay chips.tasks.<name> (given with
name=), so queued tasks, CELERY_BEAT_SCHEDULE and CELERY_TASK_ROUTES keep working."""
from .dispatch import kick_campaigns, run_campaign_lane
from .inbound_media import fetch_inbound_media, requeue_lost_media
from .lifecycle import provision_chip, provision_sweep, reapply_proxy_task, stop_chip
from .outgoing import deliver_webhook, prune_webhook_deliveries, redeliver_webhooks
from .sending import send_many, send_one, sweep_sends

__all__ = [
    "deliver_webhook",
    "fetch_inbound_media",
    "kick_campaigns",
    "prune_webhook_deliveries",
    "provision_chip",
    "provision_sweep",
    "reapply_proxy_task",
    "redeliver_webhooks",
    "requeue_lost_media",
    "run_campaign_lane",
    "send_many",
    "send_one",
    "stop_chip",
    "sweep_sends",
]
