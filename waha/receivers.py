"""What the waha app does when a tenant is suspended or reactivated (signals of whago), or
changes plan (billing)."""
from django.dispatch import receiver

from billing.signals import plan_changed
from whago.signals import tenant_reactivated, tenant_suspended

from . import ops, tasks


@receiver(tenant_suspended, dispatch_uid="waha.stop_suspended_tenant")
def stop_suspended_tenant(sender, tenant, by=None, **kwargs) -> None:
    """Its sessions and containers stop (the worker does it; the data volumes stay)."""
    ops.on_tenant_suspended(tenant, by=by)


@receiver(tenant_reactivated, dispatch_uid="waha.start_reactivated_tenant")
def start_reactivated_tenant(sender, tenant, by=None, **kwargs) -> None:
    """Its containers and the sessions meant to run start again."""
    ops.on_tenant_reactivated(tenant, by=by)


@receiver(plan_changed, dispatch_uid="waha.resize_on_plan_change")
def resize_on_plan_change(sender, tenant, **kwargs) -> None:
    """The tenant's containers get the new plan's memory and CPUs (the worker holds the engine)."""
    tasks.resize_containers.delay(tenant_id=tenant.pk)
