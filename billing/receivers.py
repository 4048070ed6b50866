"""What billing does when whago announces a tenant (whago imports no app: it sends signals)."""
from django.dispatch import receiver

from whago.signals import tenant_created

from . import services


@receiver(tenant_created, dispatch_uid="billing.start_free_plan")
def start_free_plan(sender, tenant, **kwargs) -> None:
    """A new company starts on the FREE plan, in the sign-up's transaction."""
    services.start_free_plan(tenant)
