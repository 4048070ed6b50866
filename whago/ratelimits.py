"""Keys and rates of the sign-up limits (django-ratelimit), read from settings at each request."""
from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address: CLIENT_IP_HEADER (the first entry of a forwarded list), else REMOTE_ADDR."""
    value = request.META.get(settings.CLIENT_IP_HEADER) or request.META.get("REMOTE_ADDR", "")
    return value.split(",")[0].strip()


def per_address(group: str, request: HttpRequest) -> str:
    return settings.SIGNUP_RATE_PER_ADDRESS


def site_wide(group: str, request: HttpRequest) -> str:
    return settings.SIGNUP_RATE_GLOBAL


def whole_site(group: str, request: HttpRequest) -> str:
    return "site"
