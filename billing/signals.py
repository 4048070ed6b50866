"""Signals billing sends; other apps subscribe, billing never reaches into their tables.

plan_changed(sender=Subscription, tenant, old_plan, new_plan)
    Sent after the transaction that changed a tenant's plan commits (upgrade, downgrade,
    cancellation back to FREE, expiry). `chips` stops the chips above a lower
    `max_chips` (stopped, not deleted).

usage_requested(sender=None, tenant)
    Sent by the Cobrança page to show what the tenant uses now. A receiver returns a
    dict such as {"chips": 3, "active_campaigns": 1}; billing merges the answers.
"""
from django.dispatch import Signal

plan_changed = Signal()
usage_requested = Signal()
