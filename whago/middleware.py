"""Sets request.tenant and runs the rest of the request inside that tenant's scope."""
from django.urls import Resolver404, resolve
from django_scopes import scope

from .services import authenticate_api_key
from .tenancy import presented_key, resolve_membership, suspended_membership

API_PREFIX = "/api/v1/"
# The pages a suspended company's members still reach: it may be suspended for not paying.
OPEN_WHILE_SUSPENDED = {
    "billing", "billing_checkout", "billing_payment", "billing_return", "billing_payment_check", "billing_receipt",
    "billing_sandbox_checkout", "billing_payment_status",
}


def open_while_suspended(request) -> bool:
    try:
        return resolve(request.path_info).url_name in OPEN_WHILE_SUSPENDED
    except Resolver404:
        return False


class TenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.tenant = None
        request.membership = None
        request.api_key = None
        if request.path.startswith(API_PREFIX):
            # The REST API is authenticated by tenant API keys only, never by the session.
            request.api_key = authenticate_api_key(presented_key(request))
            if request.api_key is not None:
                request.tenant = request.api_key.tenant
        elif request.user.is_authenticated:
            request.membership = resolve_membership(request)
            if request.membership is None and open_while_suspended(request):
                request.membership = suspended_membership(request)
            if request.membership is not None:
                request.tenant = request.membership.tenant
        if request.tenant is None:
            # No scope at all: a query on a tenant-owned model raises instead of leaking.
            return self.get_response(request)
        with scope(tenant=request.tenant):
            return self.get_response(request)
