"""Billing operations."""
from django.db import transaction

from whago.models import Tenant

from .models import Plan, Subscription


@transaction.atomic
def start_free_plan(tenant: Tenant) -> Subscription:
    """Put a new tenant on the FREE plan."""
    return Subscription.objects.with_scopes_disabled().create(
        tenant=tenant, plan=Plan.objects.get(code=Plan.FREE)
    )
