"""/healthz: whether this web process can serve, for load balancers and container health checks.

Answers JSON without a session, a tenant or a redirect to HTTPS (settings.SECURE_REDIRECT_EXEMPT):
200 {"status": "ok", "checks": {"database": "ok"}}, or 503 with the failing check "unavailable".
"""
import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

log = logging.getLogger(__name__)


def database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        log.warning("healthz: the database does not answer", exc_info=True)
        return False


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": "ok" if database() else "unavailable"}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks},
                        status=200 if healthy else 503)
