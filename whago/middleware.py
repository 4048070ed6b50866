"""Sets request.tenant and runs the rest of the request inside that tenant's scope."""
from django_scopes import scope

from .tenancy import resolve_membership


class TenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.tenant = None
        request.membership = None
        if request.user.is_authenticated:
            request.membership = resolve_membership(request)
            if request.membership is not None:
                request.tenant = request.membership.tenant
        if request.tenant is None:
            # No scope at all: a query on a tenant-owned model raises instead of leaking.
            return self.get_response(request)
        with scope(tenant=request.tenant):
            return self.get_response(request)
