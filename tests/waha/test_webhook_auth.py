"""How a webhook is authenticated and deduplicated for each kind of WAHA server.

WAHA Core 2024.10 signs nothing, sends no event id and never retries (../shared/waha-core
NOTES.md): its events are authenticated by the secret in the container's webhook URL.
Plus signs each body (X-Webhook-Hmac); there the signature is required as well.
Only the id of a signed body deduplicates; status events repeat legitimately.
"""
import json

import pytest
from django_scopes import scopes_disabled

from chips.models import Chip, Message
from waha.models import Engine, WahaContainer, WahaSession, WebhookEvent
from waha.webhooks import sign

pytestmark = pytest.mark.django_db


def core_event(status="STARTING", session="default", event="session.status", payload=None):
    """A body as WAHA Core 2024.10.8 posts it: no id, no timestamp."""
    return {
        "event": event,
        "session": session,
        "metadata": {"whago.session": "chip_9"},
        "me": None,
        "payload": payload if payload is not None else {"name": session, "status": status},
        "engine": "NOWEB",
        "environment": {"version": "2024.10.8", "engine": "NOWEB", "tier": "CORE", "browser": None},
    }


@pytest.fixture
def placed_on(make_owner):
    """A container row of the given tier, with one session placed in it."""

    def make(engine: str):
        _, tenant = make_owner()
        with scopes_disabled():
            container = WahaContainer.objects.create(
                tenant=tenant, name=f"auth-{tenant.pk}", runtime="docker", port=41000 + tenant.pk, engine=engine
            )
            remote = "default" if engine == Engine.CORE else "chip_9"
            session = WahaSession.objects.create(tenant=tenant, container=container, name="chip_9",
                                                 remote_name=remote)
        return container, session

    return make


def post(client, url: str, data: dict, key: str | None = None, **headers):
    body = json.dumps(data).encode()
    if key is not None:
        headers["HTTP_X_WEBHOOK_HMAC"] = sign(key, body)
        headers["HTTP_X_WEBHOOK_HMAC_ALGORITHM"] = "sha512"
    return client.post(url, data=body, content_type="application/json", **headers)


def events() -> list[WebhookEvent]:
    with scopes_disabled():
        return list(WebhookEvent.objects.order_by("pk"))


def test_an_unsigned_core_event_at_the_containers_url_is_applied(client, placed_on, waha_signals):
    container, session = placed_on(Engine.CORE)

    response = post(client, path_of(container), core_event("STARTING"))

    assert response.status_code == 200, response.content
    assert waha_signals.find("session_status_changed", session="chip_9")["status"] == "STARTING"
    with scopes_disabled():
        session.refresh_from_db()
    assert session.status == "STARTING"


def path_of(container: WahaContainer) -> str:
    return "/" + container.webhook_url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize("where", ["wrong token", "token of another container", "no token"])
def test_an_unsigned_event_without_the_right_token_is_refused_and_changes_nothing(
    client, placed_on, waha_signals, where
):
    container, session = placed_on(Engine.CORE)
    other, _ = placed_on(Engine.CORE)
    url = {
        "wrong token": f"/api/v1/webhooks/waha/{container.pk}/{'x' * 43}",
        "token of another container": f"/api/v1/webhooks/waha/{container.pk}/{other.webhook_token}",
        "no token": f"/api/v1/webhooks/waha/{container.pk}",
    }[where]

    response = post(client, url, core_event("WORKING"))

    assert response.status_code == 401
    assert events() == []
    assert not any(waha_signals.calls.values())
    with scopes_disabled():
        session.refresh_from_db()
    assert session.status == "STOPPED"


def test_a_server_that_signs_must_sign_even_at_its_token_url(client, placed_on):
    container, _ = placed_on(Engine.PLUS)
    data = core_event("WORKING", session="chip_9")

    assert post(client, path_of(container), data).status_code == 401
    assert post(client, path_of(container), data, key="another key").status_code == 401
    assert post(client, path_of(container), data, key=container.webhook_key).status_code == 200
    assert len(events()) == 1


def test_repeated_unsigned_status_events_are_each_applied(client, placed_on):
    """STARTING → STOPPED → STARTING: the third body equals the first, and still applies."""
    container, session = placed_on(Engine.CORE)

    for status in ("STARTING", "STOPPED", "STARTING"):
        assert post(client, path_of(container), core_event(status)).status_code == 200

    assert [e.payload["payload"]["status"] for e in events()] == ["STARTING", "STOPPED", "STARTING"]
    with scopes_disabled():
        session.refresh_from_db()
    assert session.status == "STARTING"


def test_an_unsigned_request_id_header_does_not_make_an_event_id(client, placed_on):
    """Five copies of a signed body without id, each with another X-Webhook-Request-Id: the header
    is not covered by the signature, so it is not used; the signed body's own id is."""
    container, _ = placed_on(Engine.PLUS)
    data = core_event("WORKING", session="chip_9")
    for n in range(5):
        post(client, path_of(container), data, key=container.webhook_key, HTTP_X_WEBHOOK_REQUEST_ID=f"req-{n}")
    assert all(e.event_id.startswith("unsigned:") for e in events())
    assert not any(e.event_id.startswith("req-") for e in events())

    data["id"] = "evt_signed_1"
    for n in range(5):
        response = post(client, path_of(container), data, key=container.webhook_key,
                        HTTP_X_WEBHOOK_REQUEST_ID=f"other-{n}")
        assert response.status_code == 200
    assert [e.event_id for e in events()].count("evt_signed_1") == 1


def test_an_inbound_message_delivered_five_times_unsigned_is_one_message(client, placed_on, make_owner):
    container, session = placed_on(Engine.CORE)
    with scopes_disabled():
        chip = Chip.all_objects.create(tenant=session.tenant, alias="Loja", session_name="chip_9",
                                       waha_session=session, status=Chip.Status.WORKING)
    inbound = core_event(event="message", payload={
        "id": "false_5511988887777@c.us_3EB0AAAA", "from": "5511988887777@c.us", "fromMe": False,
        "body": "Olá", "timestamp": 1730000000, "hasMedia": False, "_data": {"pushName": "Ana"},
    })

    for _ in range(5):
        assert post(client, path_of(container), inbound).status_code == 200

    with scopes_disabled():
        assert Message.objects.filter(chip=chip, direction=Message.Direction.IN).count() == 1


@pytest.mark.parametrize("poison", ["\u0000", "\ud800"])
def test_a_poison_character_is_removed_and_the_event_stored_once(client, placed_on, poison):
    """NUL and lone surrogates cannot be stored by PostgreSQL: they are removed at the boundary,
    the event is acknowledged (200) and never retried forever."""
    container, session = placed_on(Engine.CORE)
    with scopes_disabled():
        chip = Chip.all_objects.create(tenant=session.tenant, alias="Loja", session_name="chip_9",
                                       waha_session=session, status=Chip.Status.WORKING)
    inbound = core_event(event="message", payload={
        "id": "false_5511988887777@c.us_3EB0BBBB", "from": "5511988887777@c.us", "fromMe": False,
        "body": f"Oi{poison} tudo bem", "timestamp": 1730000000, "hasMedia": False,
        "_data": {"pushName": f"Ana{poison}"},
    })
    body = json.dumps(inbound).encode()  # json escapes both as \\u0000 / \\ud800

    response = client.post(path_of(container), data=body, content_type="application/json")

    assert response.status_code == 200, response.content
    [event] = events()
    assert poison not in json.dumps(event.payload, ensure_ascii=False)
    with scopes_disabled():
        [message] = Message.objects.filter(chip=chip, direction=Message.Direction.IN)
    assert message.body == "Oi tudo bem"


def test_a_noweb_ack_reaches_the_message_sent_with_nowebs_raw_answer(client, placed_on):
    """NOWEB's sendText answers {key: {id, remoteJid, fromMe}}; its acks carry true_<chat>@c.us_<id>."""
    from waha.client import message_id

    container, session = placed_on(Engine.CORE)
    with scopes_disabled():
        chip = Chip.all_objects.create(tenant=session.tenant, alias="Loja", session_name="chip_9",
                                       waha_session=session, status=Chip.Status.WORKING)
        sent = {"key": {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": True, "id": "3EB0C431D0"},
                "message": {"extendedTextMessage": {"text": "Olá"}}, "status": "PENDING"}
        message = Message.objects.create(tenant=session.tenant, chip=chip, peer="+5511988887777", body="Olá",
                                         status=Message.Status.SENT, waha_id=message_id(sent))
    ack = core_event(event="message.ack", payload={
        "id": "true_5511988887777@c.us_3EB0C431D0", "from": "5511988887777@c.us", "to": "5511988887777@c.us",
        "fromMe": True, "ack": 2, "ackName": "DEVICE", "body": "Olá", "timestamp": 1730000000,
    })

    assert post(client, path_of(container), ack).status_code == 200

    with scopes_disabled():
        message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
