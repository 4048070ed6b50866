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
    """Wait long enough for the worker in tests; no cached chart between tests."""
    settings.OPS_ACTION_WAIT_SECONDS = 30
    settings.OPS_CHART_CACHE_SECONDS = 0
    settings.OPS_LOG_WAIT_SECONDS = 10
    return settings


@pytest.fixture
def ops_client(client, db):
    """The test client logged in as an operator (a staff superuser; no password to hash)."""
    from whago.models import User

    user = User.objects.create_superuser(email="console@whago.test", password=None)
    client.force_login(user)
    client.user = user
    return client


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
