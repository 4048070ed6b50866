"""The log tail fragment when the worker has not answered (yet)."""
import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from waha import ops
from waha.models import ContainerStatus, WahaContainer

pytestmark = pytest.mark.django_db


@pytest.fixture
def container(make_owner) -> WahaContainer:
    _, tenant = make_owner()
    with scopes_disabled():
        return WahaContainer.objects.create(tenant=tenant, name="whago-logs-1", runtime="docker", port=21950,
                                            runtime_id="abc", status=ContainerStatus.RUNNING)


def test_no_worker_answer_keeps_polling_then_says_so(ops_client, container, settings):
    settings.OPS_LOG_WAIT_SECONDS = 0.2
    url = reverse("admin:waha_wahacontainer_logs", args=[container.pk])

    first = ops_client.get(url, {"tail": 50}).content.decode()

    assert "hx-trigger=\"load delay:1s\"" in first and "token=" in first and "try=1" in first
    token = first.split("token=")[1].split("&")[0]
    # The worker's answer, left in the cache under the token, is what the next poll shows.
    ops.cache.set(ops.LOGS_KEY.format(token=token), {"text": "2026-11-23 linha <b>1</b>", "error": "",
                                                     "at": "2026-11-23T10:00:00"}, 60)
    answered = ops_client.get(url, {"tail": 50, "token": token, "try": 1}).content.decode()
    assert 'class="ops-log"' in answered and "linha &lt;b&gt;1&lt;/b&gt;" in answered
    # A token nobody answers: after 20 polls the fragment stops and says why.
    gave_up = ops_client.get(url, {"tail": 50, "token": "nobody", "try": 20}).content.decode()
    assert 'id="logs-gave-up"' in gave_up and "hx-trigger" not in gave_up
