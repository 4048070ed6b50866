"""Plan limits and bad input: chip limit under concurrency, message quota, downgrades, clear errors."""
import base64
import io
import json
import threading

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import translation
from django_scopes import scopes_disabled

from billing import limits
from billing.services import downgrade_to_free
from billing.signals import plan_changed
from chips import errors, lifecycle, sending
from chips.models import Chip, Message

from .conftest import chip_row, placed_chip, png_bytes, set_plan

TRANSACTIONAL = pytest.mark.django_db(transaction=True)


def queued_calls() -> list[tuple[str, list]]:
    """The tasks enqueued and their arguments, read from the broker's default queue (Celery's
    message: the task name in the headers, [args, kwargs, embed] as base64 JSON in the body)."""
    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1)
    messages = [json.loads(item) for item in raw]
    return sorted((m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages)


def queued_task_names() -> list[str]:
    return [name for name, _ in queued_calls()]


@pytest.fixture
def empty_broker():
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@TRANSACTIONAL
def test_simultaneous_creates_on_a_one_chip_plan_make_exactly_one_chip(make_owner, empty_broker):
    _, tenant = make_owner()  # FREE: one chip
    barrier = threading.Barrier(8)
    created, refused, failures = [], [], []

    def create(n):
        try:
            translation.activate("en")
            barrier.wait()
            created.append(lifecycle.create_chip(tenant, f"Chip {n}").pk)
        except errors.ChipLimitReached as exc:
            refused.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(created) == 1 and len(refused) == 7
    assert refused[0].startswith("Your plan allows 1 chip(s) and you have 1.")
    with scopes_disabled():
        assert Chip.all_objects.filter(tenant=tenant).count() == 1
    assert queued_calls() == [("chips.tasks.provision_chip", created)]  # for the one chip


@pytest.mark.django_db
def test_the_plan_limit_shows_an_upgrade_link_and_creates_nothing(owner_client):
    lifecycle.create_chip(owner_client.tenant, "Primeiro")
    page = owner_client.get(reverse("chip_list")).content.decode()
    assert 'id="plan-limit"' in page and f'href="{reverse("billing")}"' in page
    response = owner_client.post(reverse("chip_create"), {"alias": "Segundo"})
    assert response.status_code == 400
    assert reverse("billing") in response.content.decode()
    with scopes_disabled():
        assert Chip.objects.filter(tenant=owner_client.tenant).count() == 1


@pytest.mark.django_db
def test_the_api_refuses_a_chip_above_the_plan_with_a_clear_error(make_owner, api):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")  # three chips
    client = api(tenant)
    for n in range(3):
        assert client.post("/api/v1/chips/", {"alias": f"Chip {n}"}, content_type="application/json").status_code == 201
    response = client.post("/api/v1/chips/", {"alias": "Quarto"}, content_type="application/json")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "chip_limit" and "3" in error["message"]
    assert client.post("/api/v1/chips/", {}, content_type="application/json").json()["error"]["fields"]["alias"]


@pytest.mark.django_db
def test_a_plan_without_the_api_gets_a_clear_403(make_owner, api):
    _, tenant = make_owner()  # FREE has no API access
    response = api(tenant).get("/api/v1/chips/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "plan_without_api"
    assert api(tenant).get("/api/v1/chips/", HTTP_AUTHORIZATION="Bearer whg_wrong").status_code == 401


@pytest.mark.django_db
def test_over_quota_is_refused_clearly_and_queues_nothing(owner_client, api, empty_broker,
                                                          django_capture_on_commit_callbacks):
    tenant = owner_client.tenant
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    limits.reserve_messages(tenant, limits.remaining_quota(tenant)["sendable"])  # today's quota all used

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = owner_client.post(reverse("message_send"), {
            "chip": chip.pk, "to": "11988887777", "kind": "text", "text": "Oi"}, HTTP_ACCEPT_LANGUAGE="en")
        api_response = api(tenant).post("/api/v1/messages/", {"chip": chip.pk, "to": "11988887777", "text": "Oi"},
                                        content_type="application/json")
    assert callbacks == []
    assert response.status_code == 400
    assert "Message quota exceeded: 1 message(s) requested, 0 left today" in response.content.decode()
    assert api_response.status_code == 402
    assert api_response.json()["error"]["code"] == "quota_exceeded"
    with scopes_disabled():
        assert not Message.objects.filter(tenant=tenant).exists()
    assert queued_calls() == []
    assert limits.remaining_quota(tenant)["sendable"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"to": "12345", "text": "Oi"}, "to", "“12345”"),
        ({"to": "", "text": "Oi"}, "to", ""),
        ({"to": "11988887777", "text": ""}, None, ""),
        ({"to": "11988887777", "kind": "image", "text": "x"}, None, ""),
        ({"to": "11988887777", "kind": "image", "file": ("nota.txt", b"not an image")}, None, "JPEG"),
    ],
    ids=["invalid-number", "no-number", "no-text", "image-without-file", "image-not-an-image"],
)
def test_bad_input_in_the_send_form_is_explained_and_nothing_is_queued(owner_client, empty_broker, data, field, text,
                                                                       django_capture_on_commit_callbacks):
    chip = placed_chip(owner_client.tenant)
    post = {"chip": chip.pk, "kind": "text", **data}
    if isinstance(post.get("file"), tuple):
        name, content = post["file"]
        post["file"] = io.BytesIO(content)
        post["file"].name = name
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = owner_client.post(reverse("message_send"), post, HTTP_ACCEPT_LANGUAGE="en")
    assert callbacks == []
    assert response.status_code == 400
    form = response.context["form"]
    errors = form.errors.get(field or "__all__") or form.errors.get("to")
    assert errors, form.errors
    assert text in " ".join(errors)
    with scopes_disabled():
        assert not Message.objects.filter(tenant=owner_client.tenant).exists()
    assert queued_calls() == []


@pytest.mark.django_db
def test_api_validation_errors_name_the_field(make_owner, api):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    offline = placed_chip(tenant, status=Chip.Status.SCAN_QR_CODE, alias="Offline")
    client = api(tenant)
    bad_number = client.post("/api/v1/messages/", {"chip": chip.pk, "to": "(11) 123", "text": "Oi"},
                             content_type="application/json")
    assert bad_number.status_code == 400 and bad_number.json()["error"]["code"] == "invalid_phone"
    missing = client.post("/api/v1/messages/", {"text": "Oi"}, content_type="application/json").json()["error"]
    assert missing["code"] == "invalid" and set(missing["fields"]) == {"chip", "to"}
    not_base64 = client.post("/api/v1/messages/", {"chip": chip.pk, "to": "11988887777", "type": "image",
                                                   "media": {"data": "%%%"}}, content_type="application/json")
    assert "media" in not_base64.json()["error"]["fields"]
    not_connected = client.post("/api/v1/messages/", {"chip": offline.pk, "to": "11988887777", "text": "Oi"},
                                content_type="application/json")
    assert not_connected.status_code == 409 and not_connected.json()["error"]["code"] == "chip_not_connected"
    qr = client.get(f"/api/v1/chips/{chip.pk}/qr")
    assert qr.status_code == 409 and qr.json()["error"]["code"] == "chip_not_ready"


@pytest.mark.django_db
def test_the_same_idempotency_key_queues_one_message(make_owner, api, empty_broker,
                                                     django_capture_on_commit_callbacks):
    import base64

    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    client = api(tenant)
    body = {"chip": chip.pk, "to": "+55 (11) 98888-7777", "type": "image", "text": "Foto",
            "media": {"data": base64.b64encode(png_bytes()).decode(), "filename": "foto.png"}}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post("/api/v1/messages/", body, content_type="application/json",
                            HTTP_IDEMPOTENCY_KEY="pedido-42")
        again = client.post("/api/v1/messages/", body, content_type="application/json",
                            HTTP_IDEMPOTENCY_KEY="pedido-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["type"] == "image" and first.json()["peer"] == "+5511988887777"
    assert first.json()["status"] == "QUEUED" and first.json()["media_mimetype"] == "image/png"
    with scopes_disabled():
        assert Message.objects.filter(tenant=tenant).count() == 1
    assert limits.remaining_quota(tenant)["day_used"] == 1
    assert queued_calls() == [("chips.tasks.send_message", [first.json()["id"]])]


@TRANSACTIONAL
def test_a_lower_plan_stops_the_chips_above_its_limit_and_a_higher_one_lets_them_back(make_owner, empty_broker):
    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    oldest = placed_chip(tenant, alias="A", status=Chip.Status.SCAN_QR_CODE)
    working = placed_chip(tenant, alias="B")
    third = placed_chip(tenant, alias="C")

    downgrade_to_free(tenant)

    assert chip_row(working.pk).status == Chip.Status.WORKING and chip_row(working.pk).suspended_at is None
    for chip in (oldest, third):
        stopped = chip_row(chip.pk)
        assert stopped.status == Chip.Status.STOPPED and stopped.suspended_at and stopped.deleted_at is None
        assert "1 chip" in stopped.last_error
    # The two sessions are stopped by the worker; its containers take the lower plan's limits.
    assert queued_task_names() == ["chips.tasks.stop_chip", "chips.tasks.stop_chip", "waha.tasks.resize_containers"]
    with pytest.raises(errors.ChipLimitReached):
        lifecycle.connect(chip_row(third.pk))

    set_plan(tenant, "ENTERPRISE")
    from billing.models import Plan, Subscription

    plan_changed.send(sender=Subscription, tenant=tenant, old_plan=Plan.objects.get(code="FREE"),
                      new_plan=Plan.objects.get(code="ENTERPRISE"))
    assert all(chip_row(c.pk).suspended_at is None for c in (oldest, working, third))
    assert chip_row(third.pk).status == Chip.Status.STOPPED  # connect it again when wanted


@pytest.mark.django_db
def test_a_batch_is_queued_whole_or_refused_whole(make_owner, api, empty_broker, django_capture_on_commit_callbacks):
    from billing.models import Reservation

    _, tenant = make_owner()
    set_plan(tenant, "BUSINESS")
    chip = placed_chip(tenant)
    client = api(tenant)
    items = [{"chip": chip.pk, "to": f"(11) 9{n:04d}-0000", "text": f"Pedido {n}", "idempotency_key": f"k{n}"}
             for n in range(1, 6)]

    bad = [*items, {"chip": chip.pk, "to": "123", "text": "x"}, {"chip": 999999, "to": "11988887777", "text": "x"}]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refused = client.post("/api/v1/messages/batch", {"messages": bad}, content_type="application/json")
    assert refused.status_code == 400 and callbacks == []
    assert set(refused.json()["error"]["fields"]["messages"]) == {"5", "6"}
    with scopes_disabled():
        assert not Message.objects.filter(tenant=tenant).exists()

    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post("/api/v1/messages/batch", {"messages": items}, content_type="application/json")
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["created"] == 5
    assert [m["peer"] for m in accepted.json()["messages"]] == [f"+55119{n:04d}0000" for n in range(1, 6)]
    ids = [m["id"] for m in accepted.json()["messages"]]
    assert queued_calls() == [("chips.tasks.send_messages", [ids])]  # one task sends the five, one after another
    with scopes_disabled():
        assert Reservation.objects.filter(tenant=tenant).get().quantity == 5
    # Sent again (a client retrying): the same messages, nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/api/v1/messages/batch", {"messages": items}, content_type="application/json")
    assert again.json()["created"] == 0
    assert [m["id"] for m in again.json()["messages"]] == ids
    assert queued_calls() == [("chips.tasks.send_messages", [ids])]

    limits.reserve_messages(tenant, limits.remaining_quota(tenant)["sendable"] - 2)
    over = [{"chip": chip.pk, "to": "11988887777", "text": f"Mais {n}"} for n in range(3)]
    response = client.post("/api/v1/messages/batch", {"messages": over}, content_type="application/json")
    assert response.status_code == 402 and response.json()["error"]["code"] == "quota_exceeded"
    with scopes_disabled():
        assert Message.objects.filter(tenant=tenant).count() == 5


@pytest.mark.django_db
def test_the_dashboard_sums_up_chips_and_todays_messages(owner_client):
    tenant = owner_client.tenant
    chip = placed_chip(tenant)
    placed_chip(tenant, status=Chip.Status.SCAN_QR_CODE, alias="Novo")
    with scopes_disabled():
        Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Oi", status="DELIVERED")
        Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Olá", direction="IN",
                               status="RECEIVED")
    page = owner_client.get(reverse("dashboard"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    summary = page[page.index('id="chips-summary"'):]
    assert "<h2>1 / 2</h2>" in summary and "1 waiting for the QR code" in summary
    assert summary.count("<h2>1</h2>") == 2  # one sent, one received today


@pytest.mark.django_db


@pytest.mark.django_db
def test_messages_whose_task_was_lost_are_queued_again(make_owner, empty_broker):
    from datetime import timedelta

    from django.utils import timezone

    _, tenant = make_owner()
    chip = placed_chip(tenant)
    with scopes_disabled():
        old = Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Oi")
        fresh = Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Oi")
        waiting = Message.objects.create(tenant=tenant, chip=chip, peer="+5511988887777", body="Oi",
                                         next_attempt_at=timezone.now() + timedelta(minutes=3))
        Message.objects.filter(pk__in=[old.pk, waiting.pk]).update(created_at=timezone.now() - timedelta(hours=1))
    assert sending.sweep() == {"settled": 0, "requeued": 1}
    assert queued_calls() == [("chips.tasks.send_messages", [[old.pk]])]
    # Given a task now, it is left alone by the next sweeps for a while.
    assert sending.sweep() == {"settled": 0, "requeued": 0}
    assert fresh.pk != old.pk
