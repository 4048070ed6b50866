"""Behind a reverse proxy (TRUSTED_PROXY_COUNT), the login lockout and the sign-up limits key on the
client's own address, which the proxy appended to X-Forwarded-For, not on the proxy's."""
import pytest
from django.urls import reverse

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.django_db

PROXY = "127.0.0.1"  # every request arrives from the proxy


def login(client, email: str, password: str, forwarded: str):
    return client.post(reverse("login"), {"username": email, "password": password},
                       REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)


def test_an_attacker_behind_the_proxy_locks_out_only_their_own_address(client, make_owner, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    victim, _ = make_owner()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        # A forged left-most entry does not help: the proxy appended the real address last.
        login(client, victim.email, "errada", forwarded="127.0.0.9, 127.0.0.66")
    assert login(client, victim.email, STRONG_PASSWORD, forwarded="127.0.0.66").status_code == 429

    assert login(client, victim.email, STRONG_PASSWORD, forwarded="127.0.0.9").status_code == 302


def test_without_trusted_proxies_the_header_is_ignored(client, make_owner, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    victim, _ = make_owner()
    for n in range(settings.AXES_FAILURE_LIMIT):
        login(client, victim.email, "errada", forwarded=f"127.0.0.{n + 10}")  # one address: REMOTE_ADDR
    assert login(client, victim.email, STRONG_PASSWORD, forwarded="127.0.0.200").status_code == 429
