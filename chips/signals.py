"""Signals the chips app sends (campaigns and other apps subscribe; chips never imports them).

All are sent inside the transaction that made the change (a receiver that raises rolls it
back) and inside `scope(tenant=tenant)`.

message_received(sender=Message, message, chip, tenant)
    An inbound message was stored (sent once per WhatsApp message). The hook for opt-out
    words: a receiver reads message.body and message.peer (E.164) and unsubscribes the contact.

message_status_changed(sender=Message, message, old_status, new_status, tenant)
    An outgoing message moved forward (SENT, DELIVERED, READ) or FAILED (message.error says
    why). Duplicated acks do not send it again.

chip_status_changed(sender=Chip, chip, old_status, new_status, tenant)
    A chip's status changed (from WAHA's events or an operation: disconnect, delete, plan limit).

campaign_running(sender=Campaign, campaign)
    A campaign was started or resumed (chips.campaigns): the dispatch launches its lanes once
    the transaction commits. Sent inside that transaction, not necessarily in a scope.
"""
from django.dispatch import Signal

message_received = Signal()
message_status_changed = Signal()
chip_status_changed = Signal()
campaign_running = Signal()
