"""Fixtures of the operators' console tests: an operator's admin client, a real worker on Docker."""
import pytest
from django.conf import settings

from tests.waha.conftest import (  # noqa: F401 - fixtures shared with the waha tests
    _leave_no_waha_containers,
    docker_client,
    make_tenant,
    remove_run_containers,
    simulator_image,
    waha_docker,
    waha_live,
    wait_for,
)


@pytest.fixture(autouse=True)
def ops_settings(settings):
    """The console as in production, with the second factor; wait long enough for the worker in tests;
    no cached chart between tests."""
    settings.ADMIN_REQUIRE_2FA = True
    settings.OPS_ACTION_WAIT_SECONDS = 30
    settings.OPS_CHART_CACHE_SECONDS = 0
    settings.OPS_LOG_WAIT_SECONDS = 10
    return settings


def pass_second_factor(client, user):
    """The session of a logged-in test client as after the admin login with the authenticator's code
    (ADMIN_REQUIRE_2FA): the operator's TOTP device, recorded in the session as django-otp does. The login
    form itself is tested in tests/ops/test_two_factor.py."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


@pytest.fixture
def ops_client(client, db):
    """The test client logged in as an operator (a staff superuser; no password to hash), past the
    second factor, so it reaches the admin whether ADMIN_REQUIRE_2FA is on or off."""
    from whago.models import User

    user = User.objects.create_superuser(email="console@whago.test", password=None)
    client.force_login(user)
    pass_second_factor(client, user)
    client.user = user
    return client


@pytest.fixture
def container(make_owner):
    """A running container's row (no real container behind it): what the console's pages show and act on."""
    from django_scopes import scopes_disabled

    from waha.models import ContainerStatus, WahaContainer

    _, tenant = make_owner()
    with scopes_disabled():
        return WahaContainer.objects.create(tenant=tenant, name="whago-access-1", runtime="docker", port=21900,
                                            status=ContainerStatus.RUNNING)


@pytest.fixture
def ops_worker(waha_live, monkeypatch, request):  # noqa: F811
    """A real Celery worker with the same docker runtime, posting webhooks to the live app."""
    for name in ("WAHA_RUNTIME", "WAHA_NETWORK_MODE", "WAHA_IMAGE", "WAHA_ENGINE", "WAHA_MEMORY_LIMIT",
                 "WAHA_CPU_LIMIT", "WAHA_READY_TIMEOUT", "WAHA_WEBHOOK_URL"):
        monkeypatch.setenv(name, str(getattr(settings, name)))
    # The console's orphan cleanup leaves young orphans alone; here every orphan is old enough.
    monkeypatch.setenv("OPS_ORPHAN_GRACE_MINUTES", "0")
    monkeypatch.setenv("OPS_SUSPEND_EVENTS_WAIT_SECONDS", "10")
    return request.getfixturevalue("celery_worker")


def messages_of(response) -> list[str]:
    """The Django messages a (followed) admin response shows."""
    return [str(message) for message in response.context["messages"]]
