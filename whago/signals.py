"""Signals of the whago app that other apps react to (whago imports no app: they come to it).

All are sent by whago.services inside the transaction that changed the tenant (receivers
that start background work should do it with transaction.on_commit). Keyword arguments:

- tenant: whago.models.Tenant
- by: whago.models.User | None, who asked for it (the operator; for tenant_created the owner who signed up)
- reason: str (tenant_suspended only)

tenant_created: a company just signed up (its owner's membership exists); receivers give it
what a new tenant starts with (billing puts it on the FREE plan). A receiver that raises undoes
the sign-up.

tenant_suspended: the tenant's members no longer reach the portal and its API keys are
refused; receivers stop what runs for it (waha stops its sessions and containers) and
keep its data. tenant_reactivated: receivers bring back what they stopped.
"""
from django.dispatch import Signal

tenant_created = Signal()
tenant_suspended = Signal()
tenant_reactivated = Signal()
