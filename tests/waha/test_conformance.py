"""The simulator's core-2024.10 profile against real WAHA Core 2024.10.8: every test runs on both
(`waha_target`, tests/waha/realwaha.py), so a difference between them fails here.

Shapes are compared (status codes, keys, messages), not volatile values (ids, timestamps, keys).
Real Core never reaches WORKING without WhatsApp: what a working session sends (NOWEB ids, media
refused as Plus-only) is held in tests/waha/test_simulator.py. Every started session has a proxy
on a closed loopback port (the target refuses anything else), so nothing leaves the machine.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.waha.realwaha import BASELINE, closed_proxy, wait_until
from tests.waha.simkit import WebhookReceiver
from waha.client import CoreSessionLimit, SessionNotFound, SessionNotReady, WahaClient
from waha.sessions import NOWEB_CONFIG

VERSION = {"version": "2024.10.8", "engine": "NOWEB", "tier": "CORE", "browser": "/usr/bin/chromium"}
CORE_ONLY = {
    "statusCode": 422,
    "message": "WAHA Core support only 'default' session. If you want to run more then one WhatsApp account - "
    "please get WAHA PLUS version. Check this out: https://waha.devlike.pro/",
    "error": "Unprocessable Entity",
}
PLUS_ONLY = {"statusCode": 422, "error": "Unprocessable Entity",
             "message": "The feature is available only in Plus version. Check this out: https://waha.devlike.pro/"}
NOT_FOUND = {"statusCode": 404, "message": "Session not found", "error": "Not Found"}
NOT_STARTED = {
    "statusCode": 404,
    "message": "We didn't find a session with name 'default'.\n"
    "Please start it first by using POST /api/sessions/default/start request",
    "error": "Not Found",
}
ALREADY_STARTED = {"statusCode": 422, "message": "Session 'default' is already started.",
                   "error": "Unprocessable Entity"}
STOPPED_INFO = {"name": "default", "status": "STOPPED", "config": None, "me": None, "engine": {}}
AXIOS_HEADERS = {"accept", "content-type", "user-agent", "content-length", "accept-encoding", "host", "connection"}
BODY_KEYS = {"event", "session", "metadata", "me", "payload", "engine", "environment"}
EVENTS = ("session.status, message, message.reaction, message.any, message.ack, message.waiting, message.revoked, "
          "state.change, group.join, group.leave, presence.update, poll.vote, poll.vote.failed, chat.archive, "
          "call.received, call.accepted, call.rejected, label.upsert, label.deleted, label.chat.added, "
          "label.chat.deleted")


def not_expected(status: str, expected: list[str]) -> dict:
    return {"error": "Session status is not as expected. Try again later or restart the session",
            "session": "default", "status": status, "expected": expected}


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1 (nothing to verify: Core signs nothing)."""
    hooks = WebhookReceiver()
    yield hooks
    hooks.close()


def statuses(receiver, accepted_only=True) -> list[str]:
    return [b["payload"]["status"] for b in receiver.events("session.status", accepted_only=accepted_only)]


# --------------------------------------------------------------------------- server


def test_version_tier_and_engine(waha_target):
    for path in ("/api/server/version", "/api/version"):
        assert waha_target.call("GET", path).json() == VERSION
        assert waha_target.raw("GET", path).json() == VERSION
        assert waha_target.raw("GET", path, headers={"X-Api-Key": "wrong"}).json() == VERSION


def test_the_api_key_is_not_enforced_and_the_environment_shows_it(waha_target):
    assert waha_target.raw("GET", "/api/sessions?all=true").json() == BASELINE
    wrong = waha_target.raw("GET", "/api/sessions?all=true", headers={"X-Api-Key": "wrong"})
    assert (wrong.status_code, wrong.json()) == (200, BASELINE)

    environment = waha_target.raw("GET", "/api/server/environment")
    assert environment.status_code == 200
    variables = environment.json()
    assert variables["WHATSAPP_API_KEY"] == waha_target.api_key
    assert variables["WHATSAPP_DEFAULT_ENGINE"] == "NOWEB"
    assert list(variables) == sorted(variables)
    assert all(k.startswith(("WAHA_", "WHATSAPP_")) or k == "DEBUG" for k in variables)
    assert all(isinstance(v, str) for v in variables.values())

    assert waha_target.raw("GET", "/ping").json() == {"message": "pong"}
    health = waha_target.raw("GET", "/health")
    assert (health.status_code, health.json()) == (422, PLUS_ONLY)
    status = waha_target.raw("GET", "/api/server/status").json()
    assert set(status) == {"startTimestamp", "uptime", "worker"} and status["worker"] == {"id": ""}
    missing = waha_target.call("GET", "/api/nothing/here")
    assert (missing.status_code, missing.json()) == (
        404, {"statusCode": 404, "message": "Cannot GET /api/nothing/here", "error": "Not Found"})


# --------------------------------------------------------------------------- sessions


def test_default_exists_and_every_other_name_is_refused(waha_target):
    call = waha_target.call
    assert call("GET", "/api/sessions?all=true").json() == BASELINE
    assert call("GET", "/api/sessions").json() == []
    assert call("GET", "/api/sessions/default").json() == STOPPED_INFO
    other = call("GET", "/api/sessions/other")
    assert (other.status_code, other.json()) == (404, NOT_FOUND)

    refused = [
        ("POST", "/api/sessions", {"name": "other"}),
        ("POST", "/api/sessions", {}),  # a generated session_<id> name
        ("PUT", "/api/sessions/other", {"config": None}),
        ("POST", "/api/sessions/other/start", None),
        ("POST", "/api/sessions/other/stop", None),
        ("POST", "/api/sessions/other/restart", None),
        ("POST", "/api/sessions/other/logout", None),
        ("DELETE", "/api/sessions/other", None),
        ("GET", "/api/sessions/other/me", None),
        ("GET", "/api/other/auth/qr?format=raw", None),
        ("POST", "/api/other/auth/request-code", {"phoneNumber": "5511999990000"}),
        ("POST", "/api/sendText", {"session": "other", "chatId": "5511988887777", "text": "x"}),
        ("POST", "/api/sendText", {"chatId": "5511988887777", "text": "x"}),  # no default session name
        ("POST", "/api/sendImage", {"session": "other", "chatId": "5511988887777",
                                    "file": {"mimetype": "image/png", "url": "http://127.0.0.1:9/a.png"}}),
    ]
    for method, path, body in refused:
        response = call(method, path, json=body)
        assert (response.status_code, response.json()) == (422, CORE_ONLY), (method, path)

    duplicate = call("POST", "/api/sessions", json={"name": "default"})
    assert (duplicate.status_code, duplicate.json()) == (
        422, {"statusCode": 422, "message": "Session 'default' already exists. Use PUT to update it.",
              "error": "Unprocessable Entity"})

    file = {"mimetype": "application/pdf", "url": "http://127.0.0.1:9/a.pdf"}
    not_running = [
        ("GET", "/api/sessions/default/me", None),
        ("GET", "/api/default/auth/qr?format=raw", None),
        ("POST", "/api/default/auth/request-code", {"phoneNumber": "5511999990000"}),
        ("POST", "/api/sendText", {"session": "default", "chatId": "5511988887777", "text": "x"}),
        ("POST", "/api/sendImage", {"session": "default", "chatId": "5511988887777", "file": file}),
        ("POST", "/api/sendFile", {"session": "default", "chatId": "5511988887777", "file": file}),
    ]
    for method, path, body in not_running:
        response = call(method, path, json=body)
        assert (response.status_code, response.json()) == (404, NOT_STARTED), (method, path)

    for action in ("stop", "logout"):  # nothing to stop: both answer the stopped session
        response = call("POST", f"/api/sessions/default/{action}")
        assert (response.status_code, response.json()) == (201, STOPPED_INFO), action


def test_put_keeps_the_known_config_fields_and_validates_them(waha_target):
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["session.status", "message.ack"],
            "hmac": {"key": "whsec"}, "retries": {"policy": "constant", "delaySeconds": 1, "attempts": 3},
            "customHeaders": [{"name": "X-Tenant", "value": "7"}]}
    config = {"proxy": closed_proxy(), "webhooks": [hook], "metadata": {"whago.session": "chip_1"}, "debug": False}
    put = waha_target.call("PUT", "/api/sessions/default",
                           json={"config": {**config, "foo": 1, "webhooks": [{**hook, "bar": 2}]}})
    assert (put.status_code, put.json()) == (200, {**STOPPED_INFO, "config": config})  # unknown fields dropped
    assert waha_target.sessions() == [{**BASELINE[0], "config": config}]

    without = waha_target.call("PUT", "/api/sessions/default", json={})  # config undefined: left out
    assert without.json() == {"name": "default", "status": "STOPPED", "me": None, "engine": {}}
    assert waha_target.sessions() == [{"name": "default", "status": "STOPPED", "me": None}]
    assert waha_target.call("PUT", "/api/sessions/default", json={"config": None}).json() == STOPPED_INFO

    p = "config.webhooks.0"
    invalid = [
        ({"webhooks": [{"url": "not a url", "events": 3}]},
         [f"{p}.url must be a URL address", f"{p}.events must be an array",
          f"{p}.each value in events must be one of the following values: {EVENTS}"]),
        ({"webhooks": [{"url": "http://127.0.0.1:9/", "events": ["foo"]}]},
         [f"{p}.each value in events must be one of the following values: {EVENTS}"]),
        ({"webhooks": [{**hook, "retries": {"policy": "nope", "attempts": -1}}]},
         [f"{p}.retries.policy must be one of the following values: linear, exponential, constant"]),
        ({"proxy": {"server": 5}}, ["config.proxy.server must be a string"]),
        ({"metadata": {"a": 1}}, ["config.metadata accepts string key-value pairs only"]),
        ({"debug": "x"}, ["config.debug must be a boolean value"]),
    ]
    for bad, messages in invalid:
        response = waha_target.call("PUT", "/api/sessions/default", json={"config": bad})
        assert (response.status_code, response.json()) == (
            400, {"statusCode": 400, "message": messages, "error": "Bad Request"}), bad
    broken = waha_target.call("PUT", "/api/sessions/default", data="{nope",
                              headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and set(broken.json()) == {"statusCode", "message", "error"}
    assert isinstance(broken.json()["message"], str) and broken.json()["error"] == "Bad Request"
    assert waha_target.sessions() == BASELINE


def test_a_session_behind_a_closed_proxy_stays_starting_and_its_webhooks_are_plain(waha_target, receiver):
    hook = {"url": receiver.url + "/hook", "events": ["session.status", "message", "message.ack"],
            "hmac": {"key": "whsec"}, "retries": {"policy": "constant", "delaySeconds": 0.1, "attempts": 5},
            "customHeaders": [{"name": "X-Tenant", "value": "7"}]}
    config = {"proxy": closed_proxy(), "webhooks": [hook], "metadata": {"whago.session": "chip_1"}}
    started = waha_target.start_session(config)
    starting = {"name": "default", "status": "STARTING", "config": config, "me": None, "engine": {"engine": "NOWEB"}}
    assert (started.status_code, started.json()) == (201, starting)
    again = waha_target.call("POST", "/api/sessions/default/start")
    assert (again.status_code, again.json()) == (422, ALREADY_STARTED)
    assert waha_target.call("GET", "/api/sessions").json() == [
        {"name": "default", "status": "STARTING", "config": config, "me": None}]
    me = waha_target.call("GET", "/api/sessions/default/me")
    assert (me.status_code, me.content) == (200, b"")  # null
    method = waha_target.call("POST", "/api/default/auth/request-code",
                              json={"phoneNumber": "5511999990000", "method": "sms"})
    assert (method.status_code, method.json()) == (422, {
        "statusCode": 422, "message": "NOWEB engine doesn't support any 'method', remove it and try again",
        "error": "Unprocessable Entity"})

    # Calls that need another status wait for it (5 s on real Core) and give up: run them together.
    file = {"mimetype": "image/png", "url": "http://127.0.0.1:9/a.png"}
    waiting = [
        ("POST", "/api/sendText", {"session": "default", "chatId": "5511988887777", "text": "x"}, ["WORKING"]),
        ("POST", "/api/sendImage", {"session": "default", "chatId": "5511988887777", "file": file}, ["WORKING"]),
        ("POST", "/api/sendFile", {"session": "default", "chatId": "5511988887777", "file": file}, ["WORKING"]),
        ("GET", "/api/default/auth/qr?format=raw", None, ["SCAN_QR_CODE"]),
    ]
    with ThreadPoolExecutor(len(waiting)) as pool:
        answers = list(pool.map(lambda w: waha_target.call(w[0], w[1], json=w[2]), waiting))
    for (_, path, _, expected), answer in zip(waiting, answers, strict=True):
        assert (answer.status_code, answer.json()) == (422, not_expected("STARTING", expected)), path

    # It cannot reach WhatsApp through the proxy: STARTING, and STARTING again at each new attempt.
    wait_until(lambda: statuses(receiver).count("STARTING") >= 2, timeout=30, message="STARTING twice")
    assert waha_target.status() == "STARTING"
    first = receiver.received[0]
    assert set(first["headers"]) == AXIOS_HEADERS  # no signature, no custom header, no event id header
    assert first["headers"]["user-agent"] == "WAHA/2024.10.8"
    assert first["headers"]["content-type"] == "application/json"
    body = first["json"]
    assert set(body) == BODY_KEYS  # no id, no timestamp
    assert (body["event"], body["session"], body["metadata"], body["me"], body["engine"]) == (
        "session.status", "default", {"whago.session": "chip_1"}, None, "NOWEB")
    assert body["payload"] == {"name": "default", "status": "STARTING"}
    assert body["environment"] == VERSION

    # A refused delivery is never tried again, whatever `retries` says.
    receiver.responder = lambda event: 500 if event["payload"]["status"] == "STOPPED" else None
    stopped = waha_target.call("POST", "/api/sessions/default/stop")
    assert (stopped.status_code, stopped.json()) == (201, {**STOPPED_INFO, "config": config})
    wait_until(lambda: "STOPPED" in statuses(receiver, accepted_only=False), timeout=30, message="STOPPED")
    seen = len(receiver.received)
    assert waha_target.call("POST", "/api/sessions/default/start").status_code == 201
    wait_until(lambda: [b["json"]["payload"]["status"] for b in receiver.received[seen:]].count("STARTING") >= 2,
               timeout=30, message="two STARTING after the refused STOPPED")
    assert statuses(receiver, accepted_only=False).count("STOPPED") == 1

    restarted = waha_target.call("POST", "/api/sessions/default/restart")
    assert (restarted.status_code, restarted.json()) == (201, starting)


def test_a_restart_forgets_the_config(waha_target, receiver):
    config = {"proxy": closed_proxy(), "webhooks": [{"url": receiver.url + "/hook", "events": ["session.status"]}]}
    assert waha_target.start_session(config).status_code == 201
    receiver.wait_for(lambda b: b["payload"]["status"] == "STARTING", timeout=30)

    waha_target.restart()

    receiver.wait_for(lambda b: b["payload"]["status"] == "STOPPED", timeout=30)  # stopped on the way down
    assert waha_target.sessions() == BASELINE
    assert waha_target.call("GET", "/api/sessions/default").json() == STOPPED_INFO
    with pytest.raises(AssertionError, match="without a proxy"):  # it would start with no proxy at all
        waha_target.call("POST", "/api/sessions/default/start")


def test_delete_removes_default_until_a_create_starts_it(waha_target):
    config = {"proxy": closed_proxy()}
    assert waha_target.start_session(config).status_code == 201
    deleted = waha_target.call("DELETE", "/api/sessions/default")
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert waha_target.sessions() == [] and waha_target.call("GET", "/api/sessions").json() == []

    for method, path, body in (("GET", "/api/sessions/default", None), ("POST", "/api/sessions/default/start", None),
                               ("POST", "/api/sessions/default/restart", None),
                               ("POST", "/api/sessions/default/logout", None),
                               ("PUT", "/api/sessions/default", {"config": config})):
        response = waha_target.call(method, path, json=body)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, path)
    me = waha_target.call("GET", "/api/sessions/default/me")
    assert (me.status_code, me.json()) == (404, NOT_STARTED)
    for method, path, status in (("POST", "/api/sessions/default/stop", 201), ("DELETE", "/api/sessions/default", 200)):
        response = waha_target.call(method, path)
        assert (response.status_code, response.content) == (status, b""), path

    # A create that does not start it leaves it removed; only a create that starts it brings it back.
    created = waha_target.call("POST", "/api/sessions", json={"name": "default", "config": config})
    assert (created.status_code, created.content) == (201, b"")
    assert waha_target.sessions() == []
    started = waha_target.call("POST", "/api/sessions", json={"name": "default", "config": config, "start": True})
    assert (started.status_code, started.json()) == (
        201, {"name": "default", "status": "STARTING", "config": config, "me": None, "engine": {"engine": "NOWEB"}})


def test_the_kit_never_starts_a_session_without_a_loopback_proxy(waha_target):
    remote = ({"proxy": {"server": "http://10.0.0.1:3128"}}, {"proxy": {"server": "web.whatsapp.com:443"}})
    for config in (None, {}, *remote):
        with pytest.raises(AssertionError, match="127.0.0.1"):
            waha_target.start_session(config)
        with pytest.raises(AssertionError, match="without a proxy"):
            waha_target.call("POST", "/api/sessions", json={"name": "default", "config": config, "start": True})
    with pytest.raises(AssertionError, match="without a proxy"):  # default's config is null
        waha_target.call("POST", "/api/sessions/default/restart")
    assert waha_target.sessions() == BASELINE  # nothing was sent


# --------------------------------------------------------------------------- a chat's messages


def chat_messages_of(waha_target, session="default"):
    return waha_target.call("GET", f"/api/{session}/chats/5511988887777@c.us/messages?limit=5&downloadMedia=false")


def test_chat_messages_need_a_working_default_session_and_the_client_says_why(waha_target):
    client = WahaClient(waha_target.base_url, waha_target.api_key, retries=0)
    stopped = chat_messages_of(waha_target)
    assert (stopped.status_code, stopped.json()) == (404, NOT_STARTED)
    with pytest.raises(SessionNotFound):
        client.chat_messages("default", "5511988887777@c.us", limit=5)
    other = chat_messages_of(waha_target, "other")
    assert (other.status_code, other.json()) == (422, CORE_ONLY)
    with pytest.raises(CoreSessionLimit):
        client.chat_messages("other", "5511988887777@c.us")
    missing = waha_target.call("GET", "/api/default/chats/messages")
    assert (missing.status_code, missing.json()["message"]) == (404, "Cannot GET /api/default/chats/messages")

    # The config WHAGO sends (waha.sessions.session_config: NOWEB's store on) is accepted and echoed as
    # sent, so a retried configure finds it unchanged; a half-given store gets class-transformer's defaults.
    config = {"proxy": closed_proxy(), "webhooks": [{"url": "http://127.0.0.1:9/hook", "events": ["message"]}],
              "metadata": {"whago.session": "chip_1"}, "noweb": NOWEB_CONFIG}
    half = waha_target.call("PUT", "/api/sessions/default",
                            json={"config": {**config, "noweb": {"store": {"enabled": True}}}})
    assert (half.status_code, half.json()["config"]) == (200, config)
    bad = waha_target.call("PUT", "/api/sessions/default", json={"config": {"noweb": {"store": {"enabled": "yes"}}}})
    assert (bad.status_code, bad.json()) == (
        400, {"statusCode": 400, "message": ["config.noweb.store.enabled must be a boolean value"],
              "error": "Bad Request"})

    # Store on or off, a session that is not WORKING is waited for (5 s on real Core), then refused.
    for noweb in (NOWEB_CONFIG, {"store": {"enabled": False, "fullSync": False}, "markOnline": True}):
        started = waha_target.start_session({**config, "noweb": noweb})
        assert (started.status_code, started.json()["config"]) == (201, {**config, "noweb": noweb})
        with pytest.raises(SessionNotReady) as error:
            client.chat_messages("default", "5511988887777", limit=5)
        assert (error.value.status, error.value.body) == (422, not_expected("STARTING", ["WORKING"]))
        assert waha_target.call("POST", "/api/sessions/default/stop").status_code == 201
