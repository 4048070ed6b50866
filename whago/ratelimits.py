"""The client's address (for the login lockout and the sign-up limits), and the keys and rates of
the sign-up limits (django-ratelimit), read from settings at each request."""
import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address the client connected from. Behind TRUSTED_PROXY_COUNT reverse proxies, each
    appending the address it was reached from to X-Forwarded-For, it is the entry that many from
    the right (what a client writes to the left of it is not trusted); without proxies, REMOTE_ADDR.
    django-axes and django-ratelimit both key on it (the same rule as Werkzeug's ProxyFix x_for)."""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        entries = [e.strip() for e in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if e.strip()]
        if len(entries) >= hops:
            candidate = entries[-hops]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass  # not an address: fall back to the peer's
    return request.META.get("REMOTE_ADDR", "")


def per_address(group: str, request: HttpRequest) -> str:
    return settings.SIGNUP_RATE_PER_ADDRESS


def site_wide(group: str, request: HttpRequest) -> str:
    return settings.SIGNUP_RATE_GLOBAL


def whole_site(group: str, request: HttpRequest) -> str:
    return "site"
