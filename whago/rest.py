"""REST API plumbing shared by every app: API-key authentication, throttling, errors.

Kept free of rest_framework.views imports: DRF loads these classes from its settings.
"""
from django.conf import settings
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey, Tenant
from .tenancy import presented_key


class ApiClient:
    """The principal of an API request: a tenant, through one of its keys."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, key: ApiKey):
        self.key = key
        self.tenant: Tenant = key.tenant
        self.pk = None

    def __str__(self) -> str:
        return f"api:{self.key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """Uses the key the TenantMiddleware already resolved (and scoped the request with)."""

    def authenticate(self, request):
        django_request = request._request
        if not presented_key(django_request):
            return None
        key = getattr(django_request, "api_key", None)
        if key is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API key."))
        return ApiClient(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class HasTenant(BasePermission):
    message = _("An API key is required.")

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ApiClient)


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per key (settings.API_THROTTLE_RATE), counted in the shared cache."""

    scope = "api_key"

    def get_rate(self) -> str:
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if isinstance(request.user, ApiClient):
            return self.cache_format % {"scope": self.scope, "ident": request.user.key.pk}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def exception_handler(exc, context):
    """Every API error as {"error": {"code", "message", "fields"?}}."""
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Not found."))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    body = {"code": getattr(exc, "default_code", "error"), "message": ""}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        body["code"] = "invalid"
        body["message"] = _("The request has invalid fields.")
        body["fields"] = detail
    elif isinstance(detail, dict) and "detail" in detail:
        body["message"] = str(detail["detail"])
        body["code"] = getattr(detail["detail"], "code", body["code"])
    elif isinstance(detail, list):
        body["message"] = " ".join(str(item) for item in detail)
    else:
        body["message"] = str(detail)
    if isinstance(exc, exceptions.Throttled) and exc.wait:
        body["retry_after"] = int(exc.wait)
    response.data = {"error": body}
    return response


def api_error(message: str, code: str, http_status: int = status.HTTP_400_BAD_REQUEST) -> Response:
    """An error response in the API's shape, for refusals decided by a service."""
    return Response({"error": {"code": code, "message": message}}, status=http_status)

