"""Receivers of other apps' signals: WAHA events, plan changes, proxy changes, usage reports."""
from django.db import transaction
from django.dispatch import receiver

from billing.signals import plan_changed, usage_requested
from proxies.signals import assignment_changed
from waha import signals as waha_signals

from . import contacts, dispatch, inbox, lifecycle, signals


def _event_ms(event) -> int:
    """WAHA's timestamp (ms) of a stored webhook event, 0 when absent."""
    try:
        return int((event.payload or {}).get("timestamp") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


@receiver(waha_signals.session_status_changed, dispatch_uid="chips.session_status")
def on_session_status(sender, tenant, session, status, me=None, event=None, **kwargs) -> None:
    lifecycle.apply_session_status(tenant, session, status, me, _event_ms(event))


@receiver(waha_signals.message_received, dispatch_uid="chips.message_received")
def on_message(sender, tenant, session, message, **kwargs) -> None:
    inbox.record_inbound(tenant, session, message if isinstance(message, dict) else {})


@receiver(signals.message_received, dispatch_uid="chips.campaign_inbound")
def on_inbound_for_campaigns(sender, message, **kwargs) -> None:
    """Opt-out words unsubscribe the contact; other messages count as replies to campaigns."""
    contacts.handle_inbound(message)


@receiver(signals.campaign_running, dispatch_uid="chips.campaign_lanes")
def on_campaign_running(sender, campaign, **kwargs) -> None:
    dispatch.launch_lanes(campaign)


@receiver(waha_signals.message_ack, dispatch_uid="chips.message_ack")
def on_ack(sender, tenant, session, message_id, ack, payload=None, **kwargs) -> None:
    inbox.apply_ack(tenant, session, message_id, ack, payload or {})


@receiver(plan_changed, dispatch_uid="chips.plan_changed")
def on_plan_changed(sender, tenant, old_plan=None, new_plan=None, **kwargs) -> None:
    lifecycle.enforce_chip_limit(tenant)


@receiver(usage_requested, dispatch_uid="chips.usage")
def on_usage_requested(sender, tenant, **kwargs) -> dict:
    return {"chips": lifecycle.chips_in_use(tenant)}


@receiver(assignment_changed, dispatch_uid="chips.assignment_changed")
def on_assignment_changed(sender, assignment, reason="", **kwargs) -> None:
    name, tenant_id = assignment.session_name, assignment.tenant_id
    transaction.on_commit(lambda: lifecycle.reapply_proxy_task.delay(name, tenant_id=tenant_id))
