import pytest
from django.urls import reverse

from whago import heartbeats
from whago.models import ProcessHeartbeat, WorkerHeartbeat


def test_status_page_shows_a_round_trip_through_a_real_worker(client, operator, celery_worker):
    client.force_login(operator)
    # No beat process here (tests/faults/test_heartbeats.py runs one): its heartbeat, as it writes it.
    heartbeats.started(ProcessHeartbeat.Role.BEAT, "beat@test")
    response = client.get(reverse("status"))
    assert response.status_code == 200, celery_worker.log()
    beat = WorkerHeartbeat.objects.get()
    assert beat.answered_at is not None and beat.worker
    assert "respondeu" in response.content.decode()


@pytest.mark.django_db
def test_status_page_says_when_no_worker_answers(client, operator):
    client.force_login(operator)
    response = client.get(reverse("status"))
    assert response.status_code == 503
    assert WorkerHeartbeat.objects.get().answered_at is None


@pytest.mark.django_db
def test_status_page_is_for_operators_only(owner_client):
    assert owner_client.get(reverse("status")).status_code == 302
