"""The WAHA simulator over real HTTP: a subprocess on a loopback port, webhooks to a real receiver."""
import base64
import io
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from PIL import Image
from pyzbar.pyzbar import decode

from tests.waha.simkit import ROOT, free_port, wait_until
from waha.simulator.webhooks import sign

CORE_MESSAGE = (
    "WAHA Core support only 'default' session. If you want to run more then one WhatsApp account - "
    "please get WAHA PLUS version. Check this out: https://waha.devlike.pro/"
)


def raw_get(url: str, **kwargs) -> requests.Response:
    """GET without the simulator's API key."""
    return requests.get(url, timeout=10, **kwargs)


def raw_post(url: str, **kwargs) -> requests.Response:
    """POST without the simulator's API key."""
    return requests.post(url, timeout=10, **kwargs)


@pytest.fixture
def simulator(simulator_factory):
    """The plus profile with the WEBJS engine: most tests here read its answers (id._serialized)."""
    return simulator_factory(env={"WHATSAPP_DEFAULT_ENGINE": "WEBJS"})


def decode_qr(png: bytes) -> str:
    """The text zbar reads from a PNG."""
    found = decode(Image.open(io.BytesIO(png)))
    assert len(found) == 1, "expected exactly one QR code in the image"
    return found[0].data.decode()


# --------------------------------------------------------------------------- command line


def test_help_lists_the_options_and_their_environment_variables():
    result = subprocess.run(
        [sys.executable, "-m", "waha.simulator", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for text in ("--port", "--api-key", "--engine", "--data-dir", "--control", "--host",
                 "WHATSAPP_API_PORT", "WAHA_API_KEY", "WAHA_LOCAL_STORE_BASE_DIR", "WAHA_SIM_ENGINE"):
        assert text in result.stdout


def test_environment_configures_it_and_the_command_line_wins(simulator_factory):
    port = free_port()
    sim = simulator_factory(
        api_key="", control=False, port=free_port(),
        env={"WHATSAPP_API_PORT": str(port), "WAHA_API_KEY": "from-env", "WAHA_SIM_ENGINE": "core"},
    )
    # --port and --engine plus come from the command line and win over the environment
    assert raw_get(sim.url("/api/server/version"), headers={"X-Api-Key": "from-env"}).json()["tier"] == "PLUS"
    assert raw_get(sim.url("/api/sessions")).status_code == 401
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/ping", timeout=2)

    sim.stop()
    sim.command = lambda: [sys.executable, "-m", "waha.simulator"]  # nothing on the command line
    sim.start()
    sim.port = port
    version = raw_get(sim.url("/api/server/version"), headers={"X-Api-Key": "from-env"})
    # the WhatsApp engine defaults to NOWEB, as WHAGO runs it
    assert version.json() == {"version": "2024.10.8", "engine": "NOWEB", "tier": "CORE", "browser": "/usr/bin/chromium"}


def test_it_stops_at_once_on_sigterm_even_with_a_hanging_webhook_receiver(simulator):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    try:
        hook = {"url": f"http://127.0.0.1:{silent.getsockname()[1]}/hook", "events": ["session.status"]}
        simulator.post("/api/sessions", {"name": "chip_t", "config": {"webhooks": [hook]}, "start": True})
        simulator.wait_status("chip_t", "SCAN_QR_CODE")
        assert simulator.stop() == 0  # left by itself on SIGTERM: a hang would be SIGKILLed (-9)
    finally:
        silent.close()


# --------------------------------------------------------------------------- auth and server routes


def test_api_key_is_required_except_on_ping(simulator):
    url = simulator.url
    assert raw_get(url("/api/sessions")).status_code == 401
    wrong = raw_get(url("/api/sessions"), headers={"X-Api-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"message": "Unauthorized", "statusCode": 401}
    assert raw_post(url("/api/sendText"), json={"chatId": "1", "text": "x"}).status_code == 401
    assert raw_get(url("/_sim/stats")).status_code == 401
    assert raw_get(url("/health")).status_code == 401
    assert raw_get(url("/api/sessions"), params={"x-api-key": simulator.api_key}).status_code == 200
    assert simulator.get("/api/sessions").status_code == 200
    assert raw_get(url("/ping")).json() == {"message": "pong"}


def test_version_health_and_unknown_routes(simulator):
    version = simulator.get("/api/server/version").json()
    assert version == {"version": "2026.6.1", "engine": "WEBJS", "tier": "PLUS", "browser": "/usr/bin/chromium"}
    health = simulator.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    missing = simulator.get("/api/nothing/here/at/all")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Cannot GET /api/nothing/here/at/all"


def test_control_routes_exist_only_with_control(simulator_factory):
    sim = simulator_factory(control=False)
    assert sim.get("/_sim/stats").status_code == 404
    assert sim.post("/_sim/sessions/default/scan", {"phone": "5511999990000"}).status_code == 404


# --------------------------------------------------------------------------- sessions


def test_session_lifecycle_with_status_webhooks(simulator, webhook_receiver):
    hook = webhook_receiver.hook(["session.status"])
    config = {"proxy": {"server": "127.0.0.1:1080", "username": "u", "password": "p"}, "webhooks": [hook],
              "metadata": {"tenant": "7"}}
    created = simulator.post("/api/sessions", {"name": "chip_1", "config": config, "start": False})
    assert created.status_code == 201
    assert created.json() == {"name": "chip_1", "status": "STOPPED", "config": config, "me": None,
                              "engine": {"engine": "WEBJS"}}
    assert simulator.get("/api/sessions").json() == []
    assert [s["name"] for s in simulator.get("/api/sessions", params={"all": "true"}).json()] == ["chip_1"]

    duplicate = simulator.post("/api/sessions", {"name": "chip_1"})
    assert duplicate.status_code == 422
    assert duplicate.json() == {"message": "Session 'chip_1' already exists. Use PUT to update it.",
                                "error": "Unprocessable Entity", "statusCode": 422}

    started = simulator.post("/api/sessions/chip_1/start")
    assert started.status_code == 201 and started.json()["status"] == "STARTING"
    simulator.wait_status("chip_1", "SCAN_QR_CODE")
    assert [s["name"] for s in simulator.get("/api/sessions").json()] == ["chip_1"]
    webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "SCAN_QR_CODE")
    assert webhook_receiver.statuses("chip_1")[:2] == ["STARTING", "SCAN_QR_CODE"]

    first = webhook_receiver.events("session.status")[0]
    request = webhook_receiver.received[0]
    assert webhook_receiver.valid_signature(request)
    assert request["headers"]["x-webhook-timestamp"] == str(first["timestamp"])
    assert request["headers"]["x-webhook-request-id"]
    assert request["headers"]["user-agent"] == "WAHA/2026.6.1"
    assert re.fullmatch(r"evt_[0-9a-z]{26}", first["id"])
    assert first["event"] == "session.status" and first["session"] == "chip_1" and first["engine"] == "WEBJS"
    assert first["metadata"] == {"tenant": "7"} and first["me"] is None
    assert first["environment"]["tier"] == "PLUS"
    assert first["payload"]["name"] == "chip_1" and first["payload"]["statuses"][-1]["status"] == "STARTING"
    assert abs(first["timestamp"] - time.time() * 1000) < 60_000
    assert len({b["id"] for b in webhook_receiver.events()}) == len(webhook_receiver.events())

    new_config = {"webhooks": [hook], "proxy": None}
    updated = simulator.put("/api/sessions/chip_1", {"config": new_config})
    assert updated.status_code == 200 and updated.json()["config"] == new_config
    assert updated.json()["status"] == "STARTING"  # it was running, so it was restarted
    simulator.wait_status("chip_1", "SCAN_QR_CODE")

    simulator.post("/_sim/sessions/chip_1/scan", {"phone": "+55 11 99999-0000", "pushName": "Loja"})
    assert simulator.get("/api/sessions/chip_1/me").json() == {"id": "5511999990000@c.us", "pushName": "Loja"}
    webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "WORKING")
    working = [b for b in webhook_receiver.events("session.status") if b["payload"]["status"] == "WORKING"][0]
    assert working["me"] == {"id": "5511999990000@c.us", "pushName": "Loja"}

    stopped = simulator.post("/api/sessions/chip_1/stop")
    assert stopped.json()["status"] == "STOPPED"
    webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "STOPPED")
    assert simulator.get("/api/sessions/chip_1/me").status_code == 404  # not running

    restarted = simulator.post("/api/sessions/chip_1/restart")
    assert restarted.json()["status"] == "STARTING"
    simulator.wait_status("chip_1", "WORKING")  # already paired: no QR this time

    logged_out = simulator.post("/api/sessions/chip_1/logout")
    assert logged_out.json()["me"] is None
    simulator.wait_status("chip_1", "SCAN_QR_CODE")

    assert simulator.delete("/api/sessions/chip_1").status_code == 200
    gone = simulator.get("/api/sessions/chip_1")
    assert gone.status_code == 404
    assert gone.json() == {"message": "Session not found", "error": "Not Found", "statusCode": 404}
    assert simulator.delete("/api/sessions/chip_1").status_code == 200  # idempotent
    for method, path in (("POST", "/start"), ("POST", "/stop"), ("POST", "/restart"), ("POST", "/logout"),
                         ("PUT", "")):
        response = simulator.http.request(method, simulator.url(f"/api/sessions/chip_1{path}"), json={})
        assert response.status_code == 404, (method, path)


def test_create_validates_the_config(simulator):
    bad = simulator.post("/api/sessions", {"name": "x", "config": {"webhooks": [{"url": "not a url", "events": 3}]}})
    assert bad.status_code == 400
    # class-validator's three messages, as real WAHA answers them
    assert bad.json()["statusCode"] == 400 and len(bad.json()["message"]) == 3
    assert simulator.post("/api/sessions", {"name": "bad name!"}).status_code == 400
    assert simulator.post("/api/sessions", {"name": "x", "config": {"proxy": {"server": 5}}}).status_code == 400
    assert simulator.http.post(simulator.url("/api/sessions"), data="{nope",
                               headers={"Content-Type": "application/json"}).status_code == 400
    assert simulator.get("/api/sessions", params={"all": "true"}).json() == []
    unnamed = simulator.post("/api/sessions", {"start": False})
    assert unnamed.status_code == 201 and unnamed.json()["name"].startswith("session_")


def test_core_accepts_only_the_default_session(simulator_factory):
    sim = simulator_factory(engine="core")
    other = sim.post("/api/sessions", {"name": "chip_2", "start": True})
    assert other.status_code == 422
    assert other.json() == {"message": CORE_MESSAGE, "error": "Unprocessable Entity", "statusCode": 422}
    assert sim.get("/api/sessions/chip_2").status_code == 404  # Core's getSessionInfo: null for other names
    assert sim.post("/api/sessions/chip_2/start").status_code == 422
    assert sim.post("/api/sendText", {"session": "chip_2", "chatId": "5511988887777", "text": "x"}).status_code == 422
    assert sim.post("/api/sessions", {"name": "default", "start": True}).status_code == 201
    assert sim.get("/api/server/version").json()["tier"] == "CORE"
    sim.wait_status("default", "SCAN_QR_CODE")
    sim.post("/_sim/sessions/default/scan", {"phone": "5511999990000"})
    sim.wait_status("default", "WORKING")
    assert sim.post("/api/sendText", {"chatId": "5511988887777", "text": "oi"}).status_code == 201
    image = sim.post("/api/sendImage", {"chatId": "5511988887777",
                                        "file": {"mimetype": "image/png", "url": "http://127.0.0.1:9/a.png"}})
    assert image.status_code == 422 and "only in Plus version" in image.json()["message"]
    assert sim.get("/health").status_code == 422


def test_plus_takes_many_named_sessions(simulator):
    for i in range(12):
        assert simulator.post("/api/sessions", {"name": f"chip_{i}", "start": True}).status_code == 201
    wait_until(lambda: all(s["status"] == "SCAN_QR_CODE" for s in simulator.get("/api/sessions").json())
               and len(simulator.get("/api/sessions").json()) == 12)


# --------------------------------------------------------------------------- QR and pairing code


def test_qr_png_decodes_to_the_raw_value_which_rotates(simulator_factory):
    sim = simulator_factory(extra_args=["--starting-seconds", "0.1", "--qr-rotate-seconds", "1.5"])
    sim.post("/api/sessions", {"name": "chip_q", "start": True})
    not_yet = sim.get("/api/chip_q/auth/qr", params={"format": "raw"})  # STARTING → waits for SCAN_QR_CODE
    assert not_yet.status_code == 200
    sim.wait_status("chip_q", "SCAN_QR_CODE")

    raw = sim.get("/api/chip_q/auth/qr", params={"format": "raw"}).json()["value"]
    assert raw.startswith("2@") and raw.count(",") == 3
    png = sim.get("/api/chip_q/auth/qr", params={"format": "image"})
    assert png.headers["Content-Type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode_qr(png.content) == raw
    assert decode_qr(sim.get("/api/chip_q/auth/qr").content) == raw  # image is the default
    as_json = sim.get("/api/chip_q/auth/qr", headers={"Accept": "application/json"}).json()
    assert as_json["mimetype"] == "image/png" and decode_qr(base64.b64decode(as_json["data"])) == raw

    rotated = wait_until(
        lambda: (v := sim.get("/api/chip_q/auth/qr", params={"format": "raw"}).json()["value"]) != raw and v,
        timeout=4,
    )
    assert decode_qr(sim.get("/api/chip_q/auth/qr").content) == rotated

    stale = sim.post("/_sim/sessions/chip_q/scan", {"phone": "5511999990000", "value": raw})
    assert stale.status_code == 422
    current = sim.get("/api/chip_q/auth/qr", params={"format": "raw"}).json()["value"]
    assert sim.post("/_sim/sessions/chip_q/scan", {"phone": "5511999990000", "value": current}).status_code == 201
    assert sim.status("chip_q") == "WORKING"

    started = time.monotonic()
    after = sim.get("/api/chip_q/auth/qr", params={"format": "raw"})
    assert after.status_code == 422
    assert after.json() == {"error": "Session status is not as expected. Try again later or restart the session",
                            "session": "chip_q", "status": "WORKING", "expected": ["SCAN_QR_CODE"]}
    assert time.monotonic() - started >= 0.9  # waited like WAHA before giving up

    assert sim.get("/api/nope/auth/qr").status_code == 404


def test_pairing_by_phone_number_with_request_code(simulator):
    simulator.post("/api/sessions", {"name": "chip_p", "start": True})
    simulator.wait_status("chip_p", "SCAN_QR_CODE")
    assert simulator.post("/api/chip_p/auth/request-code", {"phoneNumber": "abc"}).status_code == 400
    answer = simulator.post("/api/chip_p/auth/request-code", {"phoneNumber": "5511999990000"})
    assert answer.status_code == 201
    code = answer.json()["code"]
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", code)
    wrong = simulator.post("/_sim/sessions/chip_p/scan", {"phone": "5511999990000", "code": "AAAA-AAAA"})
    assert wrong.status_code == 422
    other_phone = simulator.post("/_sim/sessions/chip_p/scan", {"phone": "5511911112222", "code": code})
    assert other_phone.status_code == 422
    assert simulator.post("/_sim/sessions/chip_p/scan", {"phone": "5511999990000", "code": code}).status_code == 201
    assert simulator.get("/api/sessions/chip_p/me").json()["id"] == "5511999990000@c.us"


# --------------------------------------------------------------------------- sending and acks


def test_send_text_image_file_return_the_message_and_acks_arrive_in_order(simulator, webhook_receiver):
    simulator.create_working("chip_s", webhooks=[webhook_receiver.hook(["message.ack"])])
    behaviour = simulator.put("/_sim/behaviour", {"server_ms": 10, "device_ms": 150, "read_ms": 400})
    assert behaviour.json()["read_ms"] == 400

    text = simulator.post("/api/sendText", {"session": "chip_s", "chatId": "5511988887777", "text": "Olá, mundo"})
    assert text.status_code == 201
    sent = text.json()
    serialized = sent["id"]["_serialized"]
    assert re.fullmatch(r"true_5511988887777@c\.us_3EB0[0-9A-F]{16}", serialized)
    assert sent["id"]["fromMe"] is True and sent["id"]["remote"] == "5511988887777@c.us"
    assert (sent["body"], sent["type"], sent["fromMe"], sent["ack"]) == ("Olá, mundo", "chat", True, 0)
    assert sent["from"] == "5511999990000@c.us" and sent["to"] == "5511988887777@c.us"

    acks = webhook_receiver.wait_for(lambda b: b["payload"]["id"] == serialized, count=3)
    assert [(b["payload"]["ack"], b["payload"]["ackName"]) for b in acks] == [(1, "SERVER"), (2, "DEVICE"),
                                                                                (3, "READ")]
    first = acks[0]["payload"]
    assert (first["from"], first["to"], first["fromMe"]) == ("5511999990000@c.us", "5511988887777@c.us", True)
    assert all(webhook_receiver.valid_signature(r) for r in webhook_receiver.received)

    pixel = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
    image = simulator.post("/api/sendImage", {"session": "chip_s", "chatId": "5511988887777@c.us",
                                               "file": {"mimetype": "image/png", "filename": "a.png", "data": pixel},
                                               "caption": "foto"})
    assert image.status_code == 201 and image.json()["type"] == "image" and image.json()["hasMedia"] is True
    document = simulator.post("/api/sendFile", {"session": "chip_s", "chatId": "5511977776666",
                                                 "file": {"mimetype": "application/pdf", "filename": "boleto.pdf",
                                                          "url": "http://127.0.0.1:9/boleto.pdf"}})
    assert document.status_code == 201 and document.json()["type"] == "document"
    bad_file = simulator.post("/api/sendFile", {"session": "chip_s", "chatId": "5511977776666",
                                                 "file": {"mimetype": "application/pdf", "data": "***"}})
    assert bad_file.status_code == 400

    wait_until(lambda: simulator.get("/_sim/stats").json()["sessions"]["chip_s"]["acks"].get("READ") == 3,
               timeout=5)
    stats = simulator.get("/_sim/stats").json()["sessions"]["chip_s"]
    assert stats["sent"] == 3 and stats["sent_by_type"] == {"chat": 1, "image": 1, "document": 1}
    listed = simulator.get("/_sim/sessions/chip_s/messages").json()
    assert listed["total"] == 3
    assert [m["id"] for m in listed["messages"]][0] == serialized
    assert [m["chatId"] for m in listed["messages"]] == ["5511988887777@c.us", "5511988887777@c.us",
                                                        "5511977776666@c.us"]
    assert all(m["ackName"] == "READ" for m in listed["messages"])


def test_send_errors_match_waha(simulator):
    unknown = simulator.post("/api/sendText", {"session": "ghost", "chatId": "5511988887777", "text": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["message"].startswith("We didn't find a session with name 'ghost'.")
    simulator.post("/api/sessions", {"name": "chip_w", "start": True})
    simulator.wait_status("chip_w", "SCAN_QR_CODE")
    not_working = simulator.post("/api/sendText", {"session": "chip_w", "chatId": "5511988887777", "text": "x"})
    assert not_working.status_code == 422
    assert not_working.json()["status"] == "SCAN_QR_CODE" and not_working.json()["expected"] == ["WORKING"]
    assert simulator.post("/api/sendText", {"session": "chip_w", "text": "x"}).status_code == 400
    assert simulator.post("/api/sendText", {"session": "chip_w", "chatId": "5511988887777"}).status_code == 400
    assert simulator.get("/_sim/stats").json()["sessions"]["chip_w"]["sent"] == 0


def test_failing_recipients_get_an_error_ack_or_an_http_500(simulator, webhook_receiver):
    simulator.create_working("chip_f", webhooks=[webhook_receiver.hook(["message.ack"])])
    simulator.put("/_sim/sessions/chip_f/behaviour", {"fail_chat_ids": ["5511900000000"], "server_ms": 5})
    failing = simulator.post("/api/sendText", {"session": "chip_f", "chatId": "5511900000000", "text": "x"})
    assert failing.status_code == 201
    msg_id = failing.json()["id"]["_serialized"]
    [ack] = webhook_receiver.wait_for(lambda b: b["payload"]["id"] == msg_id)
    assert (ack["payload"]["ack"], ack["payload"]["ackName"]) == (-1, "ERROR")
    time.sleep(0.4)
    assert len([b for b in webhook_receiver.events() if b["payload"]["id"] == msg_id]) == 1  # no DEVICE after

    simulator.put("/_sim/sessions/chip_f/behaviour", {"fail_mode": "http"})
    refused = simulator.post("/api/sendText", {"session": "chip_f", "chatId": "5511900000000", "text": "x"})
    assert refused.status_code == 500 and refused.json()["statusCode"] == 500
    fine = simulator.post("/api/sendText", {"session": "chip_f", "chatId": "5511911112222", "text": "x"})
    assert fine.status_code == 201
    stats = simulator.get("/_sim/stats").json()["sessions"]["chip_f"]
    assert stats["sent"] == 2 and stats["failed"] == 2

    simulator.put("/_sim/sessions/chip_f/behaviour", {"fail_chat_ids": [], "fail_rate": 1.0, "fail_mode": "http"})
    assert simulator.post("/api/sendText", {"session": "chip_f", "chatId": "5511911112222", "text": "x"}).status_code \
        == 500
    assert simulator.delete("/_sim/sessions/chip_f/behaviour").json()["fail_rate"] == 0.0
    assert simulator.put("/_sim/behaviour", {"fail_rate": 2}).status_code == 400
    assert simulator.put("/_sim/behaviour", {"bogus": 1}).status_code == 400


def test_inbound_message_reaches_the_webhook(simulator, webhook_receiver):
    simulator.create_working("chip_i", webhooks=[webhook_receiver.hook(["message"])])
    answer = simulator.post("/_sim/sessions/chip_i/inbound",
                            {"from": "5511988887777", "body": "Quero o boleto", "pushName": "Ana"})
    assert answer.status_code == 201
    [event] = webhook_receiver.wait_for(lambda b: b["event"] == "message")
    payload = event["payload"]
    assert re.fullmatch(r"false_5511988887777@c\.us_[0-9A-F]{32}", payload["id"])
    assert (payload["from"], payload["to"], payload["fromMe"], payload["body"], payload["hasMedia"]) == (
        "5511988887777@c.us", "5511999990000@c.us", False, "Quero o boleto", False)
    assert isinstance(payload["timestamp"], int) and payload["_data"]["notifyName"] == "Ana"
    assert event["me"]["id"] == "5511999990000@c.us"
    assert webhook_receiver.events("session.status") == []  # not subscribed


def test_star_subscribes_to_everything(simulator, webhook_receiver):
    simulator.create_working("chip_star", webhooks=[webhook_receiver.hook(["*"])])
    simulator.post("/api/sendText", {"session": "chip_star", "chatId": "5511988887777", "text": "x"})
    simulator.post("/_sim/sessions/chip_star/inbound", {"from": "5511988887777", "body": "y"})
    for event in ("session.status", "message", "message.any", "message.ack"):
        webhook_receiver.wait_for(lambda b, e=event: b["event"] == e)


def test_failed_session_sends_a_status_webhook_and_restarts(simulator, webhook_receiver):
    simulator.create_working("chip_x", webhooks=[webhook_receiver.hook(["session.status"])])
    assert simulator.post("/_sim/sessions/chip_x/fail", {"reason": "device unlinked"}).json()["status"] == "FAILED"
    webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "FAILED")
    assert simulator.post("/api/sendText", {"session": "chip_x", "chatId": "1199", "text": "x"}).status_code == 422
    simulator.post("/api/sessions/chip_x/restart")
    simulator.wait_status("chip_x", "WORKING")


# --------------------------------------------------------------------------- webhook delivery


def test_hmac_matches_the_waha_documentation_example():
    body = b'{"event":"message","session":"default","engine":"WEBJS"}'
    assert sign(body, "my-secret-key") == (
        "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8097c462b2b17a6ce93b6b47a136cf2e78a33a63f67"
        "52c2c1631777076153fa89"
    )


def test_failed_deliveries_are_retried_with_backoff_and_the_same_event_id(simulator, webhook_receiver):
    hook = webhook_receiver.hook(["session.status"], retries={"policy": "linear", "delaySeconds": 0.3,
                                                               "attempts": 4})
    simulator.post("/api/sessions", {"name": "chip_r", "config": {"webhooks": [hook]}, "start": False})
    refusals = {"left": 2}

    def refuse_starting_twice(body):
        if body["payload"]["status"] == "STARTING" and refusals["left"]:
            refusals["left"] -= 1
            return 500
        return None

    webhook_receiver.responder = refuse_starting_twice
    simulator.post("/api/sessions/chip_r/start")
    [accepted] = webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "STARTING", timeout=6)
    attempts = [r for r in webhook_receiver.received if r["json"]["id"] == accepted["id"]]
    assert [r["status"] for r in attempts] == [500, 500, 200]
    assert len({r["raw"] for r in attempts}) == 1  # the very same body, so the same id and signature
    assert len({r["headers"]["x-webhook-request-id"] for r in attempts}) == 1
    gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.28 and gaps[1] >= 0.58  # linear: 0.3 s then 0.6 s
    time.sleep(0.5)
    assert len([r for r in webhook_receiver.received if r["json"]["id"] == accepted["id"]]) == 3
    stats = simulator.get("/_sim/stats").json()["webhooks"]
    assert stats["retries"] >= 2 and stats["failed_attempts"] >= 2


def test_retries_are_bounded_when_the_receiver_never_accepts(simulator, webhook_receiver):
    hook = webhook_receiver.hook(["session.status"], retries={"policy": "constant", "delaySeconds": 0.05,
                                                               "attempts": 2})
    webhook_receiver.script = [503] * 50
    simulator.post("/api/sessions", {"name": "chip_b", "config": {"webhooks": [hook]}, "start": True})
    wait_until(lambda: simulator.get("/_sim/stats").json()["webhooks"]["given_up"] >= 1, timeout=5)
    starting = [r for r in webhook_receiver.received if r["json"]["payload"]["status"] == "STARTING"]
    assert len(starting) == 3  # first try + 2 retries


def test_unreachable_receiver_does_not_block_the_api(simulator):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    # Retries a minute apart: an API that waited for its webhooks would answer each send after minutes.
    hook = {"url": dead, "events": ["*"], "retries": {"attempts": 3, "delaySeconds": 30}}
    simulator.create_working("chip_d", webhooks=[hook])
    for _ in range(20):
        assert simulator.post("/api/sendText", {"session": "chip_d", "chatId": "5511988887777", "text": "x"}) \
            .status_code == 201
    # Every send answered while its webhooks still wait for their retries.
    assert simulator.get("/_sim/stats").json()["webhooks"]["given_up"] == 0
    wait_until(lambda: simulator.get("/_sim/stats").json()["webhooks"]["failed_attempts"] > 0)


def test_global_webhook_from_environment(simulator_factory, webhook_receiver):
    sim = simulator_factory(env={
        "WHATSAPP_HOOK_URL": webhook_receiver.url + "/global",
        "WHATSAPP_HOOK_EVENTS": "session.status,message",
        "WHATSAPP_HOOK_HMAC_KEY": "global-key",
        "WHATSAPP_HOOK_CUSTOM_HEADERS": "X-Tenant:42",
    })
    created = sim.post("/api/sessions", {"name": "chip_g", "start": True}).json()
    assert created["config"] is None  # the global hook is not part of session.config
    webhook_receiver.wait_for(lambda b: b["payload"]["status"] == "SCAN_QR_CODE")
    request = webhook_receiver.received[0]
    assert request["path"] == "/global" and request["headers"]["x-tenant"] == "42"
    assert webhook_receiver.valid_signature(request, key="global-key")


# --------------------------------------------------------------------------- persistence and load


def test_sessions_persist_and_working_ones_resume_after_a_restart(simulator, webhook_receiver):
    hook = webhook_receiver.hook(["session.status"])
    simulator.create_working("chip_keep", webhooks=[hook])
    simulator.post("/api/sessions", {"name": "chip_off", "config": {"webhooks": [hook]}, "start": False})
    simulator.post("/api/sessions", {"name": "chip_qr", "start": True})
    simulator.wait_status("chip_qr", "SCAN_QR_CODE")
    for _ in range(3):
        simulator.post("/api/sendText", {"session": "chip_keep", "chatId": "5511988887777", "text": "x"})
    assert (simulator.data_dir / "sessions.json").exists()

    simulator.restart()
    assert simulator.status("chip_keep") in {"STARTING", "WORKING"}
    simulator.wait_status("chip_keep", "WORKING")
    assert simulator.get("/api/sessions/chip_keep/me").json() == {"id": "5511999990000@c.us", "pushName": "Loja"}
    assert simulator.status("chip_off") == "STOPPED"
    simulator.wait_status("chip_qr", "SCAN_QR_CODE")  # never paired: back to the QR
    info = simulator.get("/api/sessions/chip_keep").json()
    assert info["config"] == {"webhooks": [hook]}
    assert simulator.get("/_sim/stats").json()["sessions"]["chip_keep"]["sent"] == 3
    assert len(simulator.get("/_sim/sessions/chip_keep/messages").json()["messages"]) == 3

    # the resumed session announced itself again
    workings = wait_until(lambda: [s for s in webhook_receiver.statuses("chip_keep") if s == "WORKING"][1:] or None)
    assert workings == ["WORKING"]


def test_concurrent_sends_on_keep_alive_connections(simulator):
    simulator.create_working("chip_load")
    simulator.put("/_sim/behaviour", {"server_ms": None, "device_ms": None})
    ids, errors = [], []

    def worker(n):
        with requests.Session() as http:
            http.headers["X-Api-Key"] = simulator.api_key
            for i in range(50):
                r = http.post(simulator.url("/api/sendText"),
                              json={"session": "chip_load", "chatId": f"55119{n:04d}{i:04d}", "text": "promo"},
                              timeout=10)
                if r.status_code != 201:
                    errors.append(r.status_code)
                else:
                    ids.append(r.json()["id"]["_serialized"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(ids) == 400 and len(set(ids)) == 400
    assert simulator.get("/_sim/stats").json()["sessions"]["chip_load"]["sent"] == 400
    assert simulator.post("/_sim/reset").json() == {"reset": True}
    assert simulator.get("/_sim/stats").json()["sessions"]["chip_load"]["sent"] == 0


def test_session_status_events_arrive_in_the_order_they_happened(simulator, webhook_receiver):
    hook = webhook_receiver.hook(["session.status"])
    simulator.create_working("chip_o", webhooks=[hook])
    slow = {"n": 0}

    def first_ones_fail(body):
        slow["n"] += 1
        return 500 if slow["n"] % 3 == 0 else None  # some deliveries need a retry

    webhook_receiver.responder = first_ones_fail
    hook_retry = dict(hook, retries={"policy": "constant", "delaySeconds": 0.05, "attempts": 5})
    simulator.put("/api/sessions/chip_o", {"config": {"webhooks": [hook_retry]}})
    for _ in range(5):
        simulator.post("/api/sessions/chip_o/restart")  # STOPPED and STARTING a microsecond apart
    simulator.wait_status("chip_o", "WORKING")
    wait_until(lambda: simulator.get("/_sim/stats").json()["webhooks"]["pending"] == 0, timeout=10)
    events = webhook_receiver.events("session.status", "chip_o")
    seen = [b["payload"]["status"] for b in events]
    for before, after in zip(events, events[1:], strict=False):
        # each payload carries the last 3 status points: the previous event's point comes right before
        assert after["payload"]["statuses"][-2] == before["payload"]["statuses"][-1], seen
    assert seen[-1] == "WORKING" and seen.count("STOPPED") >= 6


# --------------------------------------------------------------------------- WhatsApp engines


def sent_and_acked(sim, receiver, session: str, events=("message.ack", "message.any")):
    """A working session that sent one text; returns (answer, its acks, its message.any payload)."""
    sim.create_working(session, webhooks=[receiver.hook(list(events))])
    sim.put("/_sim/behaviour", {"server_ms": 10, "device_ms": 60, "read_ms": 120})
    answer = sim.post("/api/sendText", {"session": session, "chatId": "5511988887777", "text": "Olá"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_noweb_answers_the_raw_baileys_message_and_its_events_carry_wahas_id(simulator_factory, webhook_receiver):
    sim = simulator_factory()  # WHATSAPP_DEFAULT_ENGINE unset: NOWEB
    assert sim.get("/api/server/version").json()["engine"] == "NOWEB"
    sent = sent_and_acked(sim, webhook_receiver, "chip_n")
    assert set(sent) == {"key", "message", "messageTimestamp", "status"}
    assert sent["key"]["remoteJid"] == "5511988887777@s.whatsapp.net" and sent["key"]["fromMe"] is True
    assert re.fullmatch(r"3EB0[0-9A-F]{36}", sent["key"]["id"])
    assert sent["message"] == {"extendedTextMessage": {"text": "Olá"}}
    assert re.fullmatch(r"\d+", sent["messageTimestamp"]) and sent["status"] == "PENDING"
    assert "id" not in sent  # WAHA's own id exists only in the events (buildMessageId)

    waha_id = f"true_5511988887777@c.us_{sent['key']['id']}"
    acks = webhook_receiver.wait_for(lambda b: b["event"] == "message.ack", count=3)
    assert [b["payload"] for b in acks] == [
        {"id": waha_id, "from": "5511988887777@c.us", "fromMe": True, "ack": ack, "ackName": name}
        for ack, name in ((1, "SERVER"), (2, "DEVICE"), (3, "READ"))
    ]
    assert all(b["engine"] == "NOWEB" for b in acks)
    [own] = webhook_receiver.events("message.any")
    assert own["payload"]["id"] == waha_id and own["payload"]["from"] == "5511988887777@c.us"
    assert own["payload"]["timestamp"] == {"low": int(sent["messageTimestamp"]), "high": 0, "unsigned": True}
    assert own["payload"]["_data"] == sent


def test_noweb_inbound_message_has_the_push_name_in_data(simulator_factory, webhook_receiver):
    sim = simulator_factory()
    sim.create_working("chip_in", webhooks=[webhook_receiver.hook(["message"])])
    sim.post("/_sim/sessions/chip_in/inbound", {"from": "5511988887777", "body": "Quero o boleto", "pushName": "Ana"})
    [event] = webhook_receiver.wait_for(lambda b: b["event"] == "message")
    payload = event["payload"]
    assert re.fullmatch(r"false_5511988887777@c\.us_[0-9A-F]{32}", payload["id"])
    assert set(payload) == {"id", "timestamp", "from", "fromMe", "body", "hasMedia", "ack", "ackName", "replyTo",
                            "_data"}
    assert (payload["from"], payload["fromMe"], payload["body"]) == ("5511988887777@c.us", False, "Quero o boleto")
    assert (payload["ack"], payload["ackName"]) == (None, "UNKNOWN")
    assert payload["_data"]["pushName"] == "Ana" and "notifyName" not in payload["_data"]
    assert payload["_data"]["key"] == {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": False,
                                       "id": payload["id"].rsplit("_", 1)[1]}
    assert payload["_data"]["message"] == {"conversation": "Quero o boleto"}


def test_gows_answers_a_serialized_id_and_acks_only_from_receipts(simulator_factory, webhook_receiver):
    sim = simulator_factory(env={"WHATSAPP_DEFAULT_ENGINE": "gows"})
    assert sim.get("/api/server/version").json()["engine"] == "GOWS"
    sent = sent_and_acked(sim, webhook_receiver, "chip_g", events=("message.ack", "message"))
    assert re.fullmatch(r"true_5511988887777@c\.us_3EB0[0-9A-F]{18}", sent["id"])
    assert sent["_data"] == {"extendedTextMessage": {"text": "Olá"}}
    acks = webhook_receiver.wait_for(lambda b: b["event"] == "message.ack", count=2)
    assert [(b["payload"]["ack"], b["payload"]["ackName"], b["payload"]["_data"]["Type"]) for b in acks] == [
        (2, "DEVICE", ""), (3, "READ", "read")]
    first = acks[0]["payload"]
    assert (first["id"], first["from"], first["to"], first["participant"], first["fromMe"]) == (
        sent["id"], "5511988887777@c.us", None, None, True)
    assert first["_data"]["MessageIDs"] == [sent["id"].rsplit("_", 1)[1]]

    sim.post("/_sim/sessions/chip_g/inbound", {"from": "5511977776666", "body": "oi", "pushName": "Bia"})
    [inbound] = webhook_receiver.wait_for(lambda b: b["event"] == "message")
    assert inbound["payload"]["_data"]["Info"]["PushName"] == "Bia"
    assert (inbound["payload"]["ack"], inbound["payload"]["ackName"]) == (2, "DEVICE")
    assert sim.get("/_sim/stats").json()["sessions"]["chip_g"]["acks"] == {"DEVICE": 1, "READ": 1}


def test_unknown_engines_and_profiles_are_refused():
    def run(*args, **env):
        return subprocess.run([sys.executable, "-m", "waha.simulator", "--port", str(free_port()), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", **env})

    assert "unknown WHATSAPP_DEFAULT_ENGINE 'BAILEYS'" in run(WHATSAPP_DEFAULT_ENGINE="baileys").stderr
    assert "WAHA 2024.10.8 has no GOWS engine" in run("--profile", "core-2024.10",
                                                      WHATSAPP_DEFAULT_ENGINE="GOWS").stderr
    assert "invalid choice: 'core-2099'" in run("--profile", "core-2099").stderr


# --------------------------------------------------------------------------- the core-2024.10 profile
# What real WAHA Core 2024.10.8 does and the simulator imitates is held against the real server in
# tests/waha/test_conformance.py; here only what real Core cannot show without WhatsApp.


@pytest.fixture
def core2024(simulator_factory):
    return simulator_factory(profile="core-2024.10", extra_args=["--starting-seconds", "0.1",
                                                                 "--status-wait-seconds", "1"],
                             env={"WAHA_SIM_STOP_SECONDS": "0.1", "WAHA_SIM_START_RETRY_SECONDS": "0.3"})


def test_core2024_working_session_sends_noweb_messages_and_refuses_media(core2024, webhook_receiver):
    hook = webhook_receiver.hook(["session.status", "message.ack"])
    assert core2024.put("/api/sessions/default", {"config": {"webhooks": [hook]}}).status_code == 200
    assert core2024.post("/api/sessions/default/start").status_code == 201  # no proxy: the fake network
    core2024.wait_status("default", "SCAN_QR_CODE")
    assert core2024.post("/_sim/sessions/default/scan", {"phone": "5511999990000", "pushName": "Loja"}).json()[
        "status"] == "WORKING"
    assert core2024.get("/api/sessions/default/me").json() == {"id": "5511999990000@c.us", "pushName": "Loja"}

    no_session = core2024.post("/api/sendText", {"chatId": "5511988887777", "text": "x"})
    assert no_session.status_code == 422 and no_session.json()["message"] == CORE_MESSAGE  # no default name
    sent = core2024.post("/api/sendText", {"session": "default", "chatId": "5511988887777", "text": "oi"}).json()
    waha_id = f"true_5511988887777@c.us_{sent['key']['id']}"
    webhook_receiver.wait_for(lambda b: b["event"] == "message.ack" and b["payload"]["id"] == waha_id)
    for route in ("/api/sendImage", "/api/sendFile"):
        media = core2024.post(route, {"session": "default", "chatId": "5511988887777",
                                      "file": {"mimetype": "image/png", "url": "http://127.0.0.1:9/a.png"}})
        assert media.status_code == 422
        assert media.json() == {"statusCode": 422, "error": "Unprocessable Entity", "message":
                                "The feature is available only in Plus version. Check this out: "
                                "https://waha.devlike.pro/"}
    working = [b for b in webhook_receiver.events("session.status") if b["payload"]["status"] == "WORKING"][0]
    assert working["payload"] == {"name": "default", "status": "WORKING"}
    assert working["me"] == {"id": "5511999990000@c.us", "pushName": "Loja"} and "metadata" not in working
    assert all("x-webhook-hmac" not in r["headers"] for r in webhook_receiver.received)


def test_core2024_pairing_code_and_a_bounded_answer_while_starting(core2024):
    closed = {"proxy": {"server": f"http://127.0.0.1:{free_port()}"}}
    core2024.put("/api/sessions/default", {"config": closed})
    core2024.post("/api/sessions/default/start")
    stuck = core2024.post("/api/default/auth/request-code", {"phoneNumber": "5511999990000"}, timeout=10)
    # real Core never answers here (it waits for a QR the engine never gets): the simulator gives up
    assert stuck.status_code == 500
    assert set(stuck.json()) == {"statusCode", "timestamp", "exception", "request", "version"}
    assert core2024.status("default") == "STARTING"

    with socket.socket() as proxy:  # the proxy comes up: the engine gets through, a QR appears
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(8)
        core2024.post("/api/sessions/default/stop")
        core2024.put("/api/sessions/default", {"config": {"proxy": {"server": f"127.0.0.1:{proxy.getsockname()[1]}"}}})
        core2024.post("/api/sessions/default/start")
        code = core2024.post("/api/default/auth/request-code", {"phoneNumber": "5511999990000"})
        assert code.status_code == 201 and re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", code.json()["code"])
        assert core2024.post("/_sim/sessions/default/scan", {"phone": "5511999990000",
                                                              "code": code.json()["code"]}).status_code == 201
        late = core2024.post("/api/default/auth/request-code", {"phoneNumber": "5511999990000"})
        assert late.status_code == 422
        assert late.json()["message"] == "Can request code only in SCAN_QR_CODE status. The current status is WORKING"


def test_core2024_restart_keeps_the_pairing_but_not_the_config(core2024):
    core2024.post("/api/sessions/default/start")
    core2024.wait_status("default", "SCAN_QR_CODE")
    core2024.post("/_sim/sessions/default/scan", {"phone": "5511999990000", "pushName": "Loja"})
    core2024.put("/api/sessions/default", {"config": {"metadata": {"tenant": "7"}}})
    core2024.restart()
    assert core2024.get("/api/sessions", params={"all": "true"}).json() == [
        {"name": "default", "status": "STOPPED", "config": None, "me": None}]
    core2024.post("/api/sessions/default/start")
    core2024.wait_status("default", "WORKING")  # the engine's auth files survived: no QR this time
    assert core2024.get("/api/sessions/default").json()["me"] == {"id": "5511999990000@c.us", "pushName": "Loja"}
    assert core2024.post("/api/sessions/default/logout").json()["me"] is None
    core2024.wait_status("default", "SCAN_QR_CODE")
