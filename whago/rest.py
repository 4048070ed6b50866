"""REST API plumbing shared by every app: API-key authentication, throttling, errors.

Kept free of rest_framework.views imports: DRF loads these classes from its settings.
"""
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import ConnectionError as RedisUnavailable
from redis.exceptions import TimeoutError as RedisTimeout
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey, Tenant
from .tenancy import presented_key

log = logging.getLogger(__name__)
# The broker or the Redis cache (throttle counters) unreachable: a restart takes seconds.
UNAVAILABLE = (BrokerUnavailable, RedisUnavailable, RedisTimeout)
RETRY_AFTER_SECONDS = 15


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


class TenantSuspended(exceptions.PermissionDenied):
    """A valid key of a suspended company: 403 with its own code, the reason and whom to contact."""

    default_code = "tenant_suspended"


class ApiKeyAuthentication(BaseAuthentication):
    """Uses the key the TenantMiddleware already resolved (and scoped the request with)."""

    def authenticate(self, request):
        django_request = request._request
        if not presented_key(django_request):
            return None
        key = getattr(django_request, "api_key", None)
        if key is None:
            from .services import suspended_tenant_of_key, suspension_message

            suspended = suspended_tenant_of_key(presented_key(django_request))
            if suspended is not None:
                raise TenantSuspended(suspension_message(suspended))
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


class BodyTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = gettext_lazy("The request body is too large.")


def exception_handler(exc, context):
    """Every API error as {"error": {"code", "message", "fields"?}}."""
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, UNAVAILABLE):
        return unavailable(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Not found."))
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge()
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


def unavailable(exc: Exception) -> Response:
    """503 with Retry-After while the broker or Redis is down. A message stored before its task could
    be queued stays QUEUED and is sent by the re-queue sweep; sent again with the same Idempotency-Key
    it is not queued twice."""
    log.warning("API request refused, broker or Redis unavailable: %r", exc)
    message = _("The service is briefly unavailable. Try again in %(seconds)s seconds; a message sent with an "
                "Idempotency-Key is never sent twice.") % {"seconds": RETRY_AFTER_SECONDS}
    return Response({"error": {"code": "unavailable", "message": message, "retry_after": RETRY_AFTER_SECONDS}},
                    status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def api_error(message: str, code: str, http_status: int = status.HTTP_400_BAD_REQUEST) -> Response:
    """An error response in the API's shape, for refusals decided by a service."""
    return Response({"error": {"code": code, "message": message}}, status=http_status)

