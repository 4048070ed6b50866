"""waha.client against a real simulator process over HTTP: errors, QR, sends, retries."""
import io
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from pyzbar.pyzbar import decode

from waha.client import (
    ContainerUnreachable,
    CoreSessionLimit,
    SessionAlreadyExists,
    SessionNotFound,
    SessionNotReady,
    Unauthorized,
    WahaClient,
    WahaRequestError,
    WahaServerError,
    message_id,
    push_name,
)

from .conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plus(simulator_factory) -> WahaClient:
    sim = simulator_factory(engine="plus")
    return WahaClient(sim.base_url, sim.api_key)


@pytest.fixture
def core(simulator_factory) -> WahaClient:
    sim = simulator_factory(engine="core")
    return WahaClient(sim.base_url, sim.api_key)


def test_version_and_sessions(plus):
    assert plus.version()["tier"] == "PLUS"
    created = plus.create_session("chip_1", {"proxy": {"server": "127.0.0.1:1080"}}, start=False)
    assert created["name"] == "chip_1"
    assert created["status"] == "STOPPED"
    assert [s["name"] for s in plus.list_sessions(all=True)] == ["chip_1"]
    assert plus.get_session("chip_1")["config"]["proxy"] == {"server": "127.0.0.1:1080"}


def test_wrong_api_key_is_unauthorized(plus):
    with pytest.raises(Unauthorized) as error:
        WahaClient(plus.base_url, "wrong").version()
    assert error.value.status == 401


def test_unknown_session_is_session_not_found(plus):
    with pytest.raises(SessionNotFound):
        plus.get_session("nope")
    with pytest.raises(SessionNotFound):
        plus.start_session("nope")


def test_duplicate_session_is_already_exists(plus):
    plus.create_session("chip_1", start=False)
    with pytest.raises(SessionAlreadyExists):
        plus.create_session("chip_1", start=False)


def test_core_accepts_only_default(core):
    with pytest.raises(CoreSessionLimit) as error:
        core.create_session("chip_1")
    assert error.value.status == 422
    assert core.create_session("default", start=False)["name"] == "default"


def test_nobody_listening_is_container_unreachable():
    client = WahaClient(f"http://127.0.0.1:{free_port()}", "key", retries=1, backoff=0.01)
    with pytest.raises(ContainerUnreachable):
        client.version()


def test_send_failing_with_500_is_a_server_error(plus):
    plus.create_session("chip_1")
    wait_for(lambda: plus.get_session("chip_1")["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    plus.request("POST", "/_sim/sessions/chip_1/scan", json={"phone": "5511999990001"})
    behaviour = {"fail_chat_ids": ["5511900000000@c.us"], "fail_mode": "http"}
    plus.request("PUT", "/_sim/behaviour", json=behaviour)

    with pytest.raises(WahaServerError) as error:
        plus.send_text("chip_1", "5511900000000@c.us", "Olá")
    assert error.value.status == 500
    sent = plus.send_text("chip_1", "5511988887777@c.us", "Olá")
    assert message_id(sent).startswith("true_5511988887777@c.us_")


def test_sending_to_a_session_not_working_is_refused(plus):
    plus.create_session("chip_1", start=False)
    with pytest.raises(SessionNotFound):
        plus.send_text("chip_1", "5511988887777", "Olá")


def test_qr_png_decodes_to_the_current_raw_value(plus):
    plus.create_session("chip_1")
    wait_for(lambda: plus.get_session("chip_1")["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    for _ in range(3):  # the value rotates: read raw, image, raw until both raws agree
        before, png, after = plus.qr("chip_1", "raw"), plus.qr("chip_1", "image"), plus.qr("chip_1", "raw")
        if before == after:
            break
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode(Image.open(io.BytesIO(png)))[0].data.decode() == before


def test_request_code(plus):
    plus.create_session("chip_1")
    wait_for(lambda: plus.get_session("chip_1")["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    code = plus.request_code("chip_1", "5511999990001")["code"]
    assert len(code.replace("-", "")) == 8


def test_invalid_request_is_a_request_error(plus):
    with pytest.raises(WahaRequestError) as error:
        plus.request("POST", "/api/sessions", json=["not", "an", "object"])
    assert error.value.status in (400, 422)


class Flaky(BaseHTTPRequestHandler):
    """A server that fails twice with 503 before answering: counts what it receives."""

    hits: list[str] = []

    def _answer(self):
        Flaky.hits.append(f"{self.command} {self.path}")
        if len([h for h in Flaky.hits if h == f"{self.command} {self.path}"]) <= 2:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"message": "busy"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    Flaky.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reads_are_retried_but_sends_never(flaky):
    client = WahaClient(flaky, "key", retries=2, backoff=0.01)

    assert client.list_sessions() == {"ok": True}
    assert Flaky.hits.count("GET /api/sessions?all=true") == 3

    with pytest.raises(WahaServerError):
        client.send_text("chip_1", "5511988887777@c.us", "Olá")
    assert Flaky.hits.count("POST /api/sendText") == 1

    # Session start is idempotent in WAHA: retried.
    assert client.start_session("chip_1") == {"ok": True}
    assert Flaky.hits.count("POST /api/sessions/chip_1/start") == 3


def test_keep_alive_reuses_the_connection(plus):
    from waha.client import _http

    def opened() -> int:
        """Connections the client's pool opened to this server."""
        pools = _http().get_adapter(plus.base_url).poolmanager.pools  # (not iterable: keys() is)
        port = int(plus.base_url.rsplit(":", 1)[1])
        return sum(pools[key].num_connections for key in list(pools.keys()) if pools[key].port == port)

    before = opened()
    for _ in range(21):
        plus.version()
    assert opened() - before == 1  # 21 requests, one connection


def test_sending_before_working_is_session_not_ready(plus):
    plus.create_session("chip_1")
    wait_for(lambda: plus.get_session("chip_1")["status"] == "SCAN_QR_CODE", message="SCAN_QR_CODE")
    with pytest.raises(SessionNotReady) as error:
        plus.send_text("chip_1", "5511988887777", "Olá")
    assert error.value.body["status"] == "SCAN_QR_CODE"


# What each engine's sendText answers, and the id its message.ack events carry (WAHA's source:
# src/core/engines/noweb/session.noweb.core.ts buildMessageId; WEBJS's _serialized id).
ENGINE_SHAPES = {
    "NOWEB": (
        {"key": {"remoteJid": "5511988887777@s.whatsapp.net", "fromMe": True, "id": "3EB0C431D0A1B2C3"},
         "message": {"extendedTextMessage": {"text": "Olá"}}, "messageTimestamp": "1730000000",
         "status": "PENDING"},
        "true_5511988887777@c.us_3EB0C431D0A1B2C3",
    ),
    "WEBJS": (
        {"id": {"fromMe": True, "remote": "5511988887777@c.us", "id": "3EB0AA",
                "_serialized": "true_5511988887777@c.us_3EB0AA"}, "ack": 0},
        "true_5511988887777@c.us_3EB0AA",
    ),
    "serialized string": ({"id": "true_5511988887777@c.us_3EB0BB"}, "true_5511988887777@c.us_3EB0BB"),
}


@pytest.mark.parametrize("engine", ENGINE_SHAPES)
def test_a_sent_messages_id_is_the_one_its_acks_carry(engine):
    sent, ack_id = ENGINE_SHAPES[engine]
    assert message_id(sent) == ack_id


def test_a_group_message_id_keeps_its_participant_and_nothing_is_made_up():
    sent = {"key": {"remoteJid": "1203630@g.us", "fromMe": False, "id": "ABC",
                    "participant": "5511988887777@s.whatsapp.net"}}
    assert message_id(sent) == "false_1203630@g.us_ABC_5511988887777@c.us"
    assert message_id({}) == "" and message_id({"key": {}}) == "" and message_id(None) == ""


@pytest.mark.parametrize(("data", "name"), [
    ({"notifyName": "Ana"}, "Ana"),  # WEBJS
    ({"pushName": "Ana"}, "Ana"),  # NOWEB
    ({"Info": {"PushName": "Ana"}}, "Ana"),  # GOWS
    ({}, ""),
])
def test_the_senders_name_is_read_where_each_engine_puts_it(data, name):
    assert push_name({"_data": data}) == name
    assert push_name({}) == "" and push_name({"_data": "x"}) == ""
