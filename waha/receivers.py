"""What the waha app does when a tenant is suspended or reactivated (signals of whago)."""
from django.dispatch import receiver

from whago.signals import tenant_reactivated, tenant_suspended

from . import ops


@receiver(tenant_suspended, dispatch_uid="waha.stop_suspended_tenant")
def stop_suspended_tenant(sender, tenant, by=None, **kwargs) -> None:
    """Its sessions and containers stop (the worker does it; the data volumes stay)."""
    ops.on_tenant_suspended(tenant, by=by)


@receiver(tenant_reactivated, dispatch_uid="waha.start_reactivated_tenant")
def start_reactivated_tenant(sender, tenant, by=None, **kwargs) -> None:
    """Its containers and the sessions meant to run start again."""
    ops.on_tenant_reactivated(tenant, by=by)
