from django.http import HttpRequest


def portal(request: HttpRequest) -> dict:
    """The current tenant and the user's other tenants, for the portal shell."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return {}
    return {
        "current_tenant": tenant,
        "current_membership": request.membership,
        "user_memberships": request.memberships,
    }
