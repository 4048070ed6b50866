"""The webhook receiver: signature, deduplication, storage, signals, unknown senders."""
import json

import pytest
from django.db import IntegrityError
from django_scopes import scopes_disabled

from waha import signals
from waha.models import WahaContainer, WahaSession, WebhookEvent
from waha.webhooks import sign

pytestmark = pytest.mark.django_db


@pytest.fixture
def placed(make_owner):
    """A container row and a session placed in it (no runtime needed by the receiver)."""
    _, tenant = make_owner()
    with scopes_disabled():
        container = WahaContainer.objects.create(
            tenant=tenant, name=f"hook-{tenant.pk}", runtime="docker", port=40000 + tenant.pk
        )
        session = WahaSession.objects.create(tenant=tenant, container=container, name="chip_7", remote_name="chip_7")
    return container, session


def status_event(event_id="evt_01abc", session="chip_7", status="WORKING"):
    return {
        "id": event_id,
        "timestamp": 1730000000123,
        "event": "session.status",
        "session": session,
        "metadata": None,
        "me": {"id": "5511999999999@c.us", "pushName": "Loja"},
        "payload": {"name": session, "status": status, "statuses": []},
        "engine": "WEBJS",
        "environment": {"version": "2024.10.8", "engine": "WEBJS", "tier": "PLUS"},
    }


def post(client, body: bytes, key: str | None, url: str, **headers):
    if key is not None:
        headers["HTTP_X_WEBHOOK_HMAC"] = sign(key, body)
        headers["HTTP_X_WEBHOOK_HMAC_ALGORITHM"] = "sha512"
    return client.post(url, data=body, content_type="application/json", **headers)


def stored():
    with scopes_disabled():
        return WebhookEvent.objects.count()


def test_signed_status_event_is_stored_and_fires_the_signal(client, placed, waha_signals):
    container, session = placed
    body = json.dumps(status_event()).encode()

    response = post(client, body, container.webhook_key, f"/api/v1/webhooks/waha/{container.pk}")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "stored"}
    assert stored() == 1
    call = waha_signals.find("session_status_changed", session="chip_7")
    assert call["status"] == "WORKING"
    assert call["container"].pk == container.pk
    assert call["tenant"].pk == container.tenant_id
    assert call["event_id"] == "evt_01abc"
    assert call["me"] == {"id": "5511999999999@c.us", "pushName": "Loja"}
    with scopes_disabled():
        session.refresh_from_db()
    assert (session.status, session.me_id, session.me_push_name) == ("WORKING", "5511999999999@c.us", "Loja")


@pytest.mark.parametrize("signature", ["missing", "wrong key", "tampered body", "other algorithm"])
def test_bad_signature_is_refused_and_nothing_is_stored(client, placed, waha_signals, signature):
    container, session = placed
    body = json.dumps(status_event()).encode()
    url = f"/api/v1/webhooks/waha/{container.pk}"
    if signature == "missing":
        response = post(client, body, None, url)
    elif signature == "wrong key":
        response = post(client, body, "not-the-key", url)
    elif signature == "tampered body":
        headers = {"HTTP_X_WEBHOOK_HMAC": sign(container.webhook_key, body)}
        tampered = body.replace(b"WORKING", b"FAILED")
        response = client.post(url, data=tampered, content_type="application/json", **headers)
    else:
        headers = {"HTTP_X_WEBHOOK_HMAC": sign(container.webhook_key, body), "HTTP_X_WEBHOOK_HMAC_ALGORITHM": "md5"}
        response = client.post(url, data=body, content_type="application/json", **headers)

    assert response.status_code == 401
    assert stored() == 0
    assert waha_signals.calls["session_status_changed"] == []
    with scopes_disabled():
        session.refresh_from_db()
    assert session.status == "STOPPED"


def test_a_key_of_another_container_is_refused(client, placed, make_owner):
    container, _ = placed
    _, other_tenant = make_owner()
    with scopes_disabled():
        other = WahaContainer.objects.create(tenant=other_tenant, name="other", runtime="docker", port=39999)
    body = json.dumps(status_event()).encode()
    assert post(client, body, other.webhook_key, f"/api/v1/webhooks/waha/{container.pk}").status_code == 401
    assert stored() == 0


def test_duplicate_event_is_applied_once(client, placed, waha_signals):
    container, _ = placed
    body = json.dumps(status_event()).encode()
    url = f"/api/v1/webhooks/waha/{container.pk}"

    first = post(client, body, container.webhook_key, url)
    second = post(client, body, container.webhook_key, url)

    assert first.json() == {"status": "stored"}
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate"}
    assert stored() == 1
    assert len(waha_signals.calls["session_status_changed"]) == 1


def test_unknown_session_is_accepted_logged_and_not_stored(client, placed, waha_signals, caplog):
    container, _ = placed
    body = json.dumps(status_event(session="someone_else")).encode()

    response = post(client, body, container.webhook_key, f"/api/v1/webhooks/waha/{container.pk}")

    assert response.status_code == 202
    assert stored() == 0
    assert waha_signals.calls["session_status_changed"] == []
    assert "unknown session 'someone_else'" in caplog.text


def test_unknown_container_is_accepted_and_not_stored(client, placed):
    body = json.dumps(status_event()).encode()
    response = post(client, body, "whatever", "/api/v1/webhooks/waha/999999")
    assert response.status_code == 202
    assert stored() == 0


def ack_event(event_id: str, session: str = "chip_7") -> dict:
    return {**status_event(event_id=event_id, session=session), "event": "message.ack", "payload": {
        "id": f"true_5511988887777@c.us_{event_id}", "from": "5511999999999@c.us", "to": "5511988887777@c.us",
        "fromMe": True, "ack": 2, "ackName": "DEVICE",
    }}


@pytest.mark.django_db(transaction=True)  # the foreign key is checked when the event's transaction commits
def test_an_event_for_a_container_deleted_since_the_last_one_is_ignored(client, placed):
    container, _ = placed
    url = f"/api/v1/webhooks/waha/{container.pk}"
    assert post(client, json.dumps(ack_event("evt_1")).encode(), container.webhook_key, url).status_code == 200
    with scopes_disabled():
        WahaContainer.objects.filter(pk=container.pk).delete()

    response = post(client, json.dumps(ack_event("evt_2")).encode(), container.webhook_key, url)

    assert response.status_code == 202, response.content
    assert response.json()["reason"] == "unknown container"
    assert stored() == 0  # what the receivers did in the event's transaction was rolled back with it


def test_a_status_event_reaches_the_session_row_that_replaced_a_remembered_one(client, placed, waha_signals):
    container, session = placed
    url = f"/api/v1/webhooks/waha/{container.pk}"
    assert post(client, json.dumps(ack_event("evt_1")).encode(), container.webhook_key, url).status_code == 200
    with scopes_disabled():
        session.delete()
        again = WahaSession.objects.create(
            tenant_id=container.tenant_id, container=container, name="chip_7", remote_name="chip_7"
        )

    body = json.dumps(status_event(event_id="evt_2", status="SCAN_QR_CODE")).encode()
    assert post(client, body, container.webhook_key, url).status_code == 200

    with scopes_disabled():
        again.refresh_from_db()
    assert again.status == "SCAN_QR_CODE"


def test_route_without_container_id_finds_the_sender_by_session_and_signature(client, placed, waha_signals):
    container, _ = placed
    body = json.dumps(status_event(event_id="evt_base")).encode()

    assert post(client, body, "forged", "/api/v1/webhooks/waha").status_code == 401
    response = post(client, body, container.webhook_key, "/api/v1/webhooks/waha")

    assert response.status_code == 200
    assert waha_signals.find("session_status_changed", event_id="evt_base")["container"].pk == container.pk


def test_message_and_ack_events_fire_their_signals(client, placed, waha_signals):
    container, _ = placed
    url = f"/api/v1/webhooks/waha/{container.pk}"
    inbound = {**status_event(event_id="evt_msg"), "event": "message", "payload": {
        "id": "false_5511988887777@c.us_AAAA", "from": "5511988887777@c.us", "fromMe": False, "body": "Oi",
        "timestamp": 1730000000, "hasMedia": False,
    }}
    ack = {**status_event(event_id="evt_ack"), "event": "message.ack", "payload": {
        "id": "true_5511988887777@c.us_BBBB", "from": "5511999999999@c.us", "to": "5511988887777@c.us",
        "fromMe": True, "ack": 3, "ackName": "READ",
    }}
    for event in (inbound, ack):
        body = json.dumps(event).encode()
        assert post(client, body, container.webhook_key, url).status_code == 200

    message = waha_signals.find("message_received", event_id="evt_msg")
    assert message["message"]["body"] == "Oi"
    assert message["session"] == "chip_7"
    acked = waha_signals.find("message_ack", event_id="evt_ack")
    assert (acked["message_id"], acked["ack"], acked["ack_name"]) == ("true_5511988887777@c.us_BBBB", 3, "READ")


def test_core_session_default_is_reported_under_whagos_name(client, make_owner, waha_signals):
    _, tenant = make_owner()
    with scopes_disabled():
        container = WahaContainer.objects.create(
            tenant=tenant, name="core-1", runtime="docker", port=38888, engine="core"
        )
        WahaSession.objects.create(tenant=tenant, container=container, name="chip_99", remote_name="default")
    body = json.dumps(status_event(session="default")).encode()
    assert post(client, body, container.webhook_key, f"/api/v1/webhooks/waha/{container.pk}").status_code == 200
    assert waha_signals.find("session_status_changed", session="chip_99")["status"] == "WORKING"


def test_a_failing_receiver_rolls_the_event_back_so_the_retry_applies_it(client, placed, waha_signals):
    container, _ = placed
    body = json.dumps(status_event(event_id="evt_retry")).encode()
    url = f"/api/v1/webhooks/waha/{container.pk}"

    def broken(sender, **kwargs):
        raise IntegrityError("receiver failed")

    signals.session_status_changed.connect(broken, weak=False)
    client.raise_request_exception = False
    try:
        assert post(client, body, container.webhook_key, url).status_code == 500
    finally:
        signals.session_status_changed.disconnect(broken)
    assert stored() == 0

    assert post(client, body, container.webhook_key, url).json() == {"status": "stored"}
    assert stored() == 1


def test_a_receiver_that_cannot_apply_the_event_yet_gets_a_503_and_the_retry_applies_it(client, placed,
                                                                                          waha_signals):
    container, _ = placed
    body = json.dumps(ack_event("evt_later")).encode()
    url = f"/api/v1/webhooks/waha/{container.pk}"

    def not_yet(sender, **kwargs):
        raise signals.RetryLater

    signals.message_ack.connect(not_yet, weak=False)
    try:
        response = post(client, body, container.webhook_key, url)
    finally:
        signals.message_ack.disconnect(not_yet)
    assert response.status_code == 503 and response["Retry-After"]
    assert stored() == 0

    assert post(client, body, container.webhook_key, url).json() == {"status": "stored"}
    assert stored() == 1


def test_invalid_json_with_a_valid_signature_is_a_400(client, placed):
    container, _ = placed
    body = b"{not json"
    assert post(client, body, container.webhook_key, f"/api/v1/webhooks/waha/{container.pk}").status_code == 400
    assert stored() == 0


def test_body_size_is_limited(client, placed, settings):
    container, _ = placed
    settings.WAHA_WEBHOOK_MAX_BYTES = 1000
    event = status_event()
    event["payload"]["padding"] = "x" * 2000
    body = json.dumps(event).encode()
    assert post(client, body, container.webhook_key, f"/api/v1/webhooks/waha/{container.pk}").status_code == 413
    assert stored() == 0


def test_only_post_is_accepted(client, placed):
    container, _ = placed
    assert client.get(f"/api/v1/webhooks/waha/{container.pk}").status_code == 405
