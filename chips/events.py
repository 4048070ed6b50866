"""What the chips app announces when a chip or a message changes: the tenant's outgoing webhooks
(chips.outgoing) and the app's signals (chips.signals), with the payloads both describe them by.

    chip_data(chip) / message_data(message)       a chip / a message as the webhooks and the API see it
    chip_changed(chip, old_status)                 a chip's new status (inside the transaction that saved it)
    message_changed(message, old_status)           a message's new status (idem)
"""
from __future__ import annotations

from django_scopes import scope

from . import outgoing, signals
from .models import Chip, Message


def chip_data(chip: Chip) -> dict:
    """A chip as the outgoing webhook and the API describe it."""
    return {
        "id": chip.pk,
        "alias": chip.alias,
        "status": chip.status,
        "phone": chip.phone or None,
        "push_name": chip.push_name or None,
        "last_error": chip.last_error or None,
        "deleted": chip.is_deleted,
    }


def message_data(message: Message) -> dict:
    """A message as the outgoing webhook describes it."""
    return {
        "id": message.pk,
        "chip": message.chip_id,
        "direction": message.direction,
        "peer": message.peer,
        "type": message.kind,
        "body": message.body,
        "status": message.status,
        "error": message.error or None,
        "waha_id": message.waha_id or None,
        "idempotency_key": message.idempotency_key,
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "read_at": message.read_at,
        "failed_at": message.failed_at,
    }


def chip_changed(chip: Chip, old_status: str) -> None:
    """Announce a chip's new status (call inside the transaction that saved it)."""
    if old_status == chip.status:
        return
    outgoing.emit(chip.tenant_id, "chip.status", chip_data(chip))
    with scope(tenant=chip.tenant):
        signals.chip_status_changed.send(
            sender=Chip, chip=chip, old_status=old_status, new_status=chip.status, tenant=chip.tenant
        )


def message_changed(message: Message, old_status: str) -> None:
    """Announce a message's new status (call inside the transaction that saved it)."""
    outgoing.emit(message.tenant_id, "message.status", lambda: message_data(message))
    with scope(tenant=message.tenant):
        signals.message_status_changed.send(
            sender=Message, message=message, old_status=old_status, new_status=message.status, tenant=message.tenant
        )
