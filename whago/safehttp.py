"""Outgoing HTTP to URLs that tenants give us (their webhook): never into our own networks.

Every request goes through requests-hardened's adapter, which resolves the host when the
request is sent (not when the URL was saved: DNS rebinding), refuses the address and
connects to the very address it checked (the Host header and TLS SNI keep the name).
We add a stricter rule on that same address (anything not globally routable, multicast,
reserved, site-local, IPv4-mapped forms unwrapped) and never follow redirects.

    check_url(url, require_https=True) -> str    the host, or UnsafeURL (code, plain message)
    post(url, *, data, headers, timeout) -> requests.Response   AddressNotAllowed when refused

settings.OUTGOING_HTTP_ALLOW_LOOPBACK lets loopback through (tests, whose receivers listen on
127.0.0.1); private, link-local and metadata addresses stay refused even then.
"""
from __future__ import annotations

import ipaddress
import socket

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES, InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.util import parse_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressNotAllowed(requests.RequestException):
    """The URL's host is, or resolves to, an address we never call."""


class UnsafeURL(ValueError):
    """A URL refused before any request; .code says why, .message in the user's language."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _unmapped(address: Address) -> Address:
    """::ffff:127.0.0.1 is 127.0.0.1."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allowed(address: Address, allow_loopback: bool | None = None) -> bool:
    """Whether we may connect to this address: public unicast only (loopback when allowed)."""
    if allow_loopback is None:
        allow_loopback = settings.OUTGOING_HTTP_ALLOW_LOOPBACK
    address = _unmapped(address)
    if address.is_loopback:
        return allow_loopback
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not any(address in network for network in EXTRA_BLOCKED_NET_RANGES)
    )


def _host_and_port(url: str) -> tuple[str, str, int]:
    """Scheme, host and port as requests itself will connect (its own URL preparation)."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        parts = parse_url(prepared.url)
    except (requests.RequestException, ValueError):
        raise UnsafeURL("url", _("This is not a valid URL."))
    if parts.scheme not in ("http", "https") or not parts.host:
        raise UnsafeURL("scheme", _("Use an http:// or https:// URL."))
    host = parts.host.strip("[]")
    return parts.scheme, host, parts.port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, require_https: bool = True) -> str:
    """Refuse, when it is saved, a URL whose host resolves to an address we never call.

    Plain http:// passes only when require_https is False or every address is an allowed
    loopback one (a local test receiver). post() checks again when it sends.
    """
    scheme, host, port = _host_and_port(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL("dns", _("The host %(host)s could not be resolved.") % {"host": host})
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    if not all(allowed(address) for address in addresses):
        raise UnsafeURL("address", _("The URL points to a private or local address."))
    local = all(_unmapped(address).is_loopback for address in addresses)
    if require_https and scheme != "https" and not local:
        raise UnsafeURL("scheme", _("Use an https:// URL."))
    return host


class _Adapter(IPFilterAdapter):
    """requests-hardened's pinning adapter, with our stricter rule on the address it resolved."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if not allowed(ipaddress.ip_address(host_params["host"].strip("[]")), self._allow_loopback):
            raise AddressNotAllowed(host_params["host"])
        return host_params, pool_kwargs


def session() -> requests.Session:
    """A requests session whose every connection goes to a checked, pinned address."""
    http = requests.Session()
    allow_loopback = settings.OUTGOING_HTTP_ALLOW_LOOPBACK
    http.mount("http://", _Adapter(is_https_proto=False, allow_loopback=allow_loopback))
    http.mount("https://", _Adapter(is_https_proto=True, allow_loopback=allow_loopback))
    return http


def post(url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> requests.Response:
    """POST to a tenant's URL; the answer's status and headers only (the body is not read).

    Raises AddressNotAllowed when the address is refused, other requests exceptions when the
    endpoint cannot be reached.
    """
    with session() as http:
        try:
            response = http.post(url, data=data, headers=headers, timeout=timeout, allow_redirects=False,
                                 stream=True)
        except InvalidIPAddress as exc:
            raise AddressNotAllowed(str(exc)) from exc
        # A slow or endless body must not hold the worker: only the status line matters.
        response.close()
        return response
