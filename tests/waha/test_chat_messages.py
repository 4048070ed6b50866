"""WAHA's record of a chat (GET /api/{session}/chats/{chatId}/messages) through waha.client against the
simulator over HTTP: what a session sent and received, with the ids its sendText answers and its
message.ack webhooks carry; and the `lost_answer` behaviour (a send WhatsApp got whose answer is lost).

What real WAHA Core 2024.10.8 answers before WORKING is held against the real server in
tests/waha/test_conformance.py; real Core never reaches WORKING here, so what a working session
lists is read from WAHA's source (chats.controller.ts, session.noweb.core.ts toWAMessage,
Sqlite3MessagesRepository.getAllByJid) and held here.
"""
import pytest

from waha.client import (
    ContainerUnreachable,
    FeatureUnavailable,
    SessionNotFound,
    SessionNotReady,
    WahaClient,
    message_id,
)
from waha.sessions import NOWEB_CONFIG

from .simkit import wait_until

CHAT, OTHER = "5511988887777@c.us", "5511977776666@c.us"
STORE_OFF = {
    "statusCode": 400, "error": "Bad Request",
    "message": 'Enable NOWEB store "config.noweb.store.enabled=True" and "config.noweb.store.full_sync=True" '
               "when starting a new session. Read more: https://waha.devlike.pro/docs/engines/noweb#store",
}


def working(sim, name: str, receiver, noweb: dict | None = NOWEB_CONFIG) -> WahaClient:
    """A paired session whose acks come quickly (read at 60 ms); its client."""
    config = {"webhooks": [receiver.hook(["message.ack", "message"])]}
    if noweb is not None:
        config["noweb"] = noweb
    assert sim.post("/api/sessions", {"name": name, "config": config, "start": True}).status_code == 201
    sim.wait_status(name, "SCAN_QR_CODE")
    assert sim.post(f"/_sim/sessions/{name}/scan", {"phone": "5511999990000"}).status_code == 201
    sim.put(f"/_sim/sessions/{name}/behaviour", {"server_ms": 5, "device_ms": 30, "read_ms": 60})
    return WahaClient(sim.base_url, sim.api_key)


def acks_of(receiver, waha_id: str) -> list[int]:
    return [b["payload"]["ack"] for b in receiver.events("message.ack") if b["payload"]["id"] == waha_id]


@pytest.mark.parametrize("engine", ["NOWEB", "WEBJS", "GOWS"])
def test_the_chat_lists_what_was_sent_and_received_newest_first_with_the_ids_of_the_acks(
        simulator_factory, webhook_receiver, engine):
    sim = simulator_factory(env={"WHATSAPP_DEFAULT_ENGINE": engine})
    client = working(sim, "chip_1", webhook_receiver)
    first = message_id(client.send_text("chip_1", CHAT, "primeira"))
    inbound = sim.post("/_sim/sessions/chip_1/inbound", {"from": CHAT, "body": "oi", "pushName": "Ana"}).json()
    second = message_id(client.send_text("chip_1", "5511988887777", "segunda"))  # a bare number: the same chat
    elsewhere = message_id(client.send_text("chip_1", OTHER, "outra"))
    for waha_id in (first, second, elsewhere):  # READ (3) is the last ack of every engine here
        wait_until(lambda waha_id=waha_id: 3 in acks_of(webhook_receiver, waha_id),
                   message=f"the READ ack of {waha_id}")
    assert first.startswith(f"true_{CHAT}_") and second.startswith(f"true_{CHAT}_")

    listed = client.chat_messages("chip_1", CHAT)
    assert [m["id"] for m in listed] == [second, inbound["id"], first]  # newest first (same second: latest)
    assert [(m["fromMe"], m["body"]) for m in listed] == [(True, "segunda"), (False, "oi"), (True, "primeira")]
    assert [m["ack"] for m in listed if m["fromMe"]] == [3, 3]  # the store follows the acks
    assert all(isinstance(m["timestamp"], int) for m in listed)
    if engine == "NOWEB":  # toWAMessage of the stored Baileys message
        assert listed[0]["from"] == CHAT and "to" not in listed[0]
        assert listed[0]["_data"]["key"] == {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": True,
                                             "id": second.rsplit("_", 1)[1]}
        assert listed[0]["_data"]["status"] == 4  # READ
        assert (listed[1]["ack"], listed[1]["ackName"]) == (None, "UNKNOWN")

    assert [m["id"] for m in client.chat_messages("chip_1", CHAT, limit=1)] == [second]
    assert [m["id"] for m in client.chat_messages("chip_1", OTHER)] == [elsewhere]
    assert client.chat_messages("chip_1", "5511900000000@c.us") == []


def test_a_noweb_session_without_its_store_cannot_answer(simulator_factory, webhook_receiver):
    sim = simulator_factory()  # NOWEB
    client = working(sim, "chip_s", webhook_receiver, noweb=None)
    client.send_text("chip_s", CHAT, "sem store")
    with pytest.raises(FeatureUnavailable) as error:
        client.chat_messages("chip_s", CHAT)
    assert (error.value.status, error.value.body) == (400, STORE_OFF)

    # Turned on later (PUT restarts the session): only what comes after is kept, as NOWEB's store.
    config = sim.get("/api/sessions/chip_s").json()["config"]
    assert sim.put("/api/sessions/chip_s", {"config": {**config, "noweb": NOWEB_CONFIG}}).status_code == 200
    sim.wait_status("chip_s", "WORKING")
    assert client.chat_messages("chip_s", CHAT) == []
    kept = message_id(client.send_text("chip_s", CHAT, "com store"))
    assert [m["id"] for m in client.chat_messages("chip_s", CHAT)] == [kept]


def test_a_session_not_working_is_refused_as_waha_refuses_it(simulator_factory):
    sim = simulator_factory(extra_args=["--status-wait-seconds", "0.2"])
    client = WahaClient(sim.base_url, sim.api_key)
    config = {"noweb": NOWEB_CONFIG}
    sim.post("/api/sessions", {"name": "chip_q", "config": config, "start": True})
    sim.wait_status("chip_q", "SCAN_QR_CODE")
    with pytest.raises(SessionNotReady) as error:
        client.chat_messages("chip_q", CHAT)
    assert error.value.body == {"error": "Session status is not as expected. Try again later or restart the session",
                                "session": "chip_q", "status": "SCAN_QR_CODE", "expected": ["WORKING"]}
    sim.post("/api/sessions/chip_q/stop")
    with pytest.raises(SessionNotFound) as error:
        client.chat_messages("chip_q", CHAT)
    assert error.value.body["message"].startswith("We didn't find a session with name 'chip_q'.")


def test_a_send_whose_answer_is_lost_reached_whatsapp_and_the_chat_shows_it(simulator_factory, webhook_receiver):
    sim = simulator_factory()
    client = working(sim, "chip_l", webhook_receiver)
    behaviour = sim.put("/_sim/sessions/chip_l/behaviour", {"fail_chat_ids": [CHAT], "fail_mode": "lost_answer"})
    assert behaviour.status_code == 200 and behaviour.json()["fail_mode"] == "lost_answer"

    with pytest.raises(ContainerUnreachable):  # the connection closes unanswered; a send is never repeated
        client.send_text("chip_l", CHAT, "perdida")
    [listed] = client.chat_messages("chip_l", CHAT)
    assert (listed["fromMe"], listed["body"]) == (True, "perdida")
    wait_until(lambda: 3 in acks_of(webhook_receiver, listed["id"]), message="the lost send's acks")
    assert acks_of(webhook_receiver, listed["id"]) == [1, 2, 3]  # delivered as usual: not an error ack
    stats = sim.get("/_sim/stats").json()["sessions"]["chip_l"]
    assert (stats["sent"], stats["failed"], stats["answers_lost"]) == (1, 0, 1)

    answered = client.send_text("chip_l", OTHER, "respondida")  # other chats answer as usual
    assert [m["id"] for m in client.chat_messages("chip_l", OTHER)] == [message_id(answered)]
    bad = sim.put("/_sim/behaviour", {"fail_mode": "nope"})
    assert (bad.status_code, bad.json()["message"]) == (400, ["fail_mode must be ack, http or lost_answer"])


def test_core2024_keeps_a_chat_only_since_the_session_started(simulator_factory, webhook_receiver):
    sim = simulator_factory(profile="core-2024.10", extra_args=["--starting-seconds", "0.1",
                                                                "--status-wait-seconds", "0.2"],
                            env={"WAHA_SIM_STOP_SECONDS": "0.1"})
    client = WahaClient(sim.base_url, sim.api_key)
    put = sim.put("/api/sessions/default", {"config": {"noweb": {"store": {"enabled": True}}}})
    # class-transformer fills NowebConfig's defaults, as real Core echoes them (test_conformance)
    assert put.json()["config"] == {"noweb": {"store": {"enabled": True, "fullSync": False}, "markOnline": True}}
    sim.post("/api/sessions/default/start")
    sim.wait_status("default", "SCAN_QR_CODE")
    sim.post("/_sim/sessions/default/scan", {"phone": "5511999990000"})
    sent = message_id(client.send_text("default", CHAT, "oi"))
    assert [m["id"] for m in client.chat_messages("default", CHAT)] == [sent]

    sim.post("/api/sessions/default/stop")
    sim.post("/api/sessions/default/start")  # Core's NOWEB store is an in-memory SQLite, new at each start
    sim.wait_status("default", "WORKING")
    assert client.chat_messages("default", CHAT) == []
