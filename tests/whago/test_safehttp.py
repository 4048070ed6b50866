"""whago.safehttp's address rule: public unicast only; loopback only when the setting allows it."""
import ipaddress

import pytest

from whago import safehttp

REFUSED = [
    "127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::",  # noqa: S104 - refused, not bound
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "::ffff:192.168.1.1", "fd00::1",
    "169.254.169.254", "fd00:ec2::254", "fe80::1", "fec0::1",  # link-local, cloud metadata, site-local
    "224.0.0.1", "239.255.255.250", "ff02::1",  # multicast
    "240.0.0.1", "255.255.255.255", "100.64.0.1", "192.0.0.8", "198.18.0.1",  # reserved, CG-NAT, benchmarking
    "192.0.2.1", "2001:db8::1",  # documentation
    "64:ff9b::7f00:1", "2002:7f00:1::",  # NAT64 and 6to4 forms of 127.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address):
    assert not safehttp.allowed(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert safehttp.allowed(ipaddress.ip_address(address), allow_loopback=False)


def test_loopback_allowed_only_when_asked_and_private_never():
    loopback = [ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert all(safehttp.allowed(a, allow_loopback=True) for a in loopback)
    assert not any(safehttp.allowed(a, allow_loopback=False) for a in loopback)
    assert not safehttp.allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert not safehttp.allowed(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "https://", "javascript:alert(1)"])
def test_urls_that_are_not_http_are_refused(url):
    with pytest.raises(safehttp.UnsafeURL):
        safehttp.check_url(url)
