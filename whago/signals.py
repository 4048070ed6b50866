"""Signals of the whago app that other apps react to.

Both are sent by whago.services inside the transaction that changed the tenant (receivers
that start background work should do it with transaction.on_commit). Keyword arguments:

- tenant: whago.models.Tenant
- by: whago.models.User | None, the operator who asked for it
- reason: str (tenant_suspended only)

tenant_suspended: the tenant's members no longer reach the portal and its API keys are
refused; receivers stop what runs for it (waha stops its sessions and containers) and
keep its data. tenant_reactivated: receivers bring back what they stopped.
"""
from django.dispatch import Signal

tenant_suspended = Signal()
tenant_reactivated = Signal()
