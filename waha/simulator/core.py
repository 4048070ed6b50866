"""The simulated WAHA: sessions, their status machine, the fake network, stats and persistence."""
from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
import secrets
import tempfile
import threading
import time
from collections import Counter, deque

from . import BROWSER, ENGINE_NAME, PLUS_VERSION, WAHA_VERSION
from .config import Config
from .jobs import Scheduler
from .qr import png_bytes, raw_value
from .webhooks import ALL_EVENTS, Hook, WebhookSender, dumps, new_event_id

STOPPED, STARTING, SCAN_QR_CODE, WORKING, FAILED = "STOPPED", "STARTING", "SCAN_QR_CODE", "WORKING", "FAILED"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
DOCS_URL = "https://waha.devlike.pro/"
CORE_ONLY_DEFAULT = (
    "WAHA Core support only 'default' session. If you want to run more then one WhatsApp account - "
    f"please get WAHA PLUS version. Check this out: {DOCS_URL}"
)
PLUS_ONLY = f"The feature is available only in Plus version. Check this out: {DOCS_URL}"
STATUS_NOT_EXPECTED = "Session status is not as expected. Try again later or restart the session"
NAME_MAX = 64 - len("waha_noweb")
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ123456789"
HTTP_REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}


class SimError(Exception):
    """An HTTP error with WAHA's (NestJS) body."""

    def __init__(self, status: int, body) -> None:
        super().__init__(str(body))
        self.status = status
        if isinstance(body, str):
            body = {"message": body, "error": HTTP_REASONS.get(status, "Error"), "statusCode": status}
        self.body = body


def bad_request(*messages: str) -> SimError:
    """400 with class-validator style messages."""
    return SimError(400, {"message": list(messages), "error": "Bad Request", "statusCode": 400})


def chat_id(value: str) -> str:
    """WAHA's ensureSuffix: a bare phone number becomes '<digits>@c.us'."""
    value = value.strip()
    if "@" in value:
        return value
    return re.sub(r"[^0-9]", "", value) + "@c.us"


def phone_digits(value) -> str:
    """Digits of a phone number given as '+55 11 9...' or '5511...@c.us'."""
    if not isinstance(value, str):
        raise bad_request("phone must be a string")
    digits = re.sub(r"[^0-9]", "", value.split("@")[0])
    if not 8 <= len(digits) <= 15:
        raise bad_request("phone must have 8 to 15 digits in international format")
    return digits


def now_ms() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


class Record:
    """One message sent through the API, kept for /_sim/ inspection."""

    __slots__ = ("id", "chat_id", "type", "body", "timestamp", "ack")

    def __init__(self, id: str, chat_id: str, type: str, body: str, timestamp: int, ack: int = 0) -> None:
        self.id, self.chat_id, self.type, self.body, self.timestamp, self.ack = id, chat_id, type, body, timestamp, ack

    def as_dict(self) -> dict:
        """JSON form."""
        return {
            "id": self.id,
            "chatId": self.chat_id,
            "type": self.type,
            "body": self.body,
            "timestamp": self.timestamp,
            "ack": self.ack,
            "ackName": ACK_NAMES.get(self.ack, "UNKNOWN"),
        }


class Session:
    """One WhatsApp session."""

    def __init__(self, name: str, config: dict | None, me: dict | None = None) -> None:
        self.name = name
        self.config = config
        self.me = me
        self.status = STOPPED
        self.running = False
        self.gen = 0
        self.lock = threading.RLock()
        self.statuses: deque = deque(maxlen=3)
        self.hooks: list[Hook] = []
        self.qr_seed = os.urandom(16)
        self.qr_index = 0
        self.qr_png: tuple[bytes, int, bytes] | None = None
        self.pair_code: str | None = None
        self.pair_phone: str | None = None
        self.behaviour: dict | None = None
        self.records: list[Record] = []
        self.sent = 0
        self.sent_by_type: Counter = Counter()
        self.inbound = 0
        self.acks: Counter = Counter()
        self.failed = 0


class Store:
    """sessions.json (atomic rewrite) and messages.jsonl (append) in the data dir."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.sessions_path = os.path.join(directory, "sessions.json")
        self.messages_path = os.path.join(directory, "messages.jsonl")
        self._lock = threading.Lock()
        self._messages = open(self.messages_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends

    def load(self) -> tuple[dict, list[dict]]:
        """Saved sessions and message records."""
        sessions = {}
        if os.path.exists(self.sessions_path):
            with open(self.sessions_path, encoding="utf-8") as fh:
                sessions = json.load(fh).get("sessions", {})
        records = []
        with open(self.messages_path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue  # a torn last line after a crash
        return sessions, records

    def save(self, sessions: dict) -> None:
        """Write sessions.json atomically."""
        data = json.dumps({"version": 1, "sessions": sessions}, ensure_ascii=False, indent=1)
        with self._lock:
            fd, tmp = tempfile.mkstemp(prefix=".sessions.", dir=self.dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.sessions_path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise

    def append(self, record: dict) -> None:
        """Append one sent message."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            self._messages.write(line)
            self._messages.flush()

    def truncate_messages(self) -> None:
        """Forget every message record."""
        with self._lock:
            self._messages.close()
            self._messages = open(self.messages_path, "w", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        """Close the append handle."""
        with self._lock:
            self._messages.close()


def validate_config(config) -> dict | None:
    """Check a SessionConfig like WAHA's class-validator rules; returns it unchanged."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise bad_request("config must be an object")
    errors = []
    proxy = config.get("proxy")
    if proxy is not None:
        if not isinstance(proxy, dict) or not isinstance(proxy.get("server"), str) or not proxy["server"]:
            errors.append("config.proxy.server must be a string")
        else:
            for key in ("username", "password"):
                if proxy.get(key) is not None and not isinstance(proxy[key], str):
                    errors.append(f"config.proxy.{key} must be a string")
    webhooks = config.get("webhooks")
    if webhooks is not None:
        if not isinstance(webhooks, list):
            errors.append("config.webhooks must be an array")
        else:
            for i, hook in enumerate(webhooks):
                p = f"config.webhooks.{i}"
                if not isinstance(hook, dict):
                    errors.append(f"{p} must be an object")
                    continue
                url = hook.get("url")
                if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
                    errors.append(f"{p}.url must be a URL address")
                events = hook.get("events")
                if not isinstance(events, list):
                    errors.append(f"{p}.events must be an array")
                else:
                    for event in events:
                        if event != "*" and event not in ALL_EVENTS:
                            errors.append(f"{p}.events each value must be one of the following values: "
                                          + ", ".join(sorted(ALL_EVENTS)))
                            break
                hmac_cfg = hook.get("hmac")
                if hmac_cfg is not None and (
                    not isinstance(hmac_cfg, dict) or (hmac_cfg.get("key") is not None
                                                       and not isinstance(hmac_cfg.get("key"), str))
                ):
                    errors.append(f"{p}.hmac.key must be a string")
                retries = hook.get("retries")
                if retries is not None:
                    if not isinstance(retries, dict):
                        errors.append(f"{p}.retries must be an object")
                    else:
                        for key in ("delaySeconds", "attempts"):
                            value = retries.get(key)
                            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                                      or value < 0):
                                errors.append(f"{p}.retries.{key} must be a number conforming to the specified "
                                              "constraints")
                        if retries.get("policy") not in (None, "linear", "exponential", "constant"):
                            errors.append(f"{p}.retries.policy must be one of the following values: linear, "
                                          "exponential, constant")
                headers = hook.get("customHeaders")
                if headers is not None and (
                    not isinstance(headers, list)
                    or not all(isinstance(h, dict) and isinstance(h.get("name"), str)
                               and isinstance(h.get("value"), str) for h in headers)
                ):
                    errors.append(f"{p}.customHeaders must be an array of {{name, value}}")
    metadata = config.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        errors.append("config.metadata must be an object with string values")
    if config.get("debug") is not None and not isinstance(config.get("debug"), bool):
        errors.append("config.debug must be a boolean value")
    if errors:
        raise bad_request(*errors)
    return config


BEHAVIOUR_KEYS = {"server_ms", "device_ms", "read_ms", "fail_rate", "fail_chat_ids", "fail_mode", "seed"}


def validate_behaviour(body, base: dict) -> dict:
    """Merge a partial behaviour update into base after checking it."""
    if not isinstance(body, dict):
        raise bad_request("behaviour must be an object")
    unknown = set(body) - BEHAVIOUR_KEYS
    if unknown:
        raise bad_request(*(f"unknown behaviour key {k}" for k in sorted(unknown)))
    out = dict(base)
    for key in ("server_ms", "device_ms", "read_ms"):
        if key in body:
            value = body[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise bad_request(f"{key} must be a number of milliseconds >= 0 or null")
            out[key] = value
    if "fail_rate" in body:
        rate = body["fail_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise bad_request("fail_rate must be between 0 and 1")
        out["fail_rate"] = float(rate)
    if "fail_chat_ids" in body:
        ids = body["fail_chat_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) and i.strip() for i in ids):
            raise bad_request("fail_chat_ids must be an array of chat ids")
        out["fail_chat_ids"] = [chat_id(i) for i in ids]
    if "fail_mode" in body:
        if body["fail_mode"] not in ("ack", "http"):
            raise bad_request("fail_mode must be ack or http")
        out["fail_mode"] = body["fail_mode"]
    if "seed" in body:
        if body["seed"] is not None and (isinstance(body["seed"], bool) or not isinstance(body["seed"], int)):
            raise bad_request("seed must be an integer or null")
        out["seed"] = body["seed"]
    return out


class Simulator:
    """All state of one simulated WAHA server."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.sessions: dict[str, Session] = {}
        self.lock = threading.RLock()
        self.jobs = Scheduler(4, "sim-jobs")
        self.sender = WebhookSender(cfg.webhook_workers, cfg.webhook_timeout, cfg.max_pending_webhooks)
        version = WAHA_VERSION if cfg.tier == "CORE" else PLUS_VERSION
        self.environment = {"version": version, "engine": ENGINE_NAME, "tier": cfg.tier, "browser": BROWSER}
        self.global_hook = Hook.from_config(cfg.global_hook.as_config()) if cfg.global_hook else None
        self.behaviour = {
            "server_ms": cfg.ack_server_ms,
            "device_ms": cfg.ack_device_ms,
            "read_ms": cfg.ack_read_ms,
            "fail_rate": 0.0,
            "fail_chat_ids": [],
            "fail_mode": "ack",
            "seed": None,
        }
        self.rng = random.Random()
        self.rng_lock = threading.Lock()
        self.record_count = 0
        self.started_at = time.time()
        self.store = Store(cfg.data_dir) if cfg.data_dir else None
        if self.store:
            self._restore()

    # ----------------------------------------------------------------- lifecycle

    def _restore(self) -> None:
        saved, records = self.store.load()
        for name, data in saved.items():
            session = Session(name, data.get("config"), data.get("me"))
            session.hooks = self._hooks_for(session.config)
            self.sessions[name] = session
        for rec in records:
            session = self.sessions.get(rec.get("session"))
            if session is None:
                continue
            session.sent += 1
            session.sent_by_type[rec.get("type", "chat")] += 1
            if self.record_count < self.cfg.max_messages:
                session.records.append(
                    Record(rec["id"], rec["chatId"], rec.get("type", "chat"), rec.get("body", ""), rec["timestamp"])
                )
                self.record_count += 1
        if self.cfg.restart_sessions:
            for name, data in saved.items():
                if data.get("running"):
                    self._start(self.sessions[name])

    def close(self) -> None:
        """Stop background work."""
        self.jobs.stop()
        self.sender.stop()
        if self.store:
            self.store.close()

    def _persist(self) -> None:
        if not self.store:
            return
        with self.lock:
            snapshot = {
                name: {"config": s.config, "me": s.me, "running": s.running} for name, s in self.sessions.items()
            }
            self.store.save(snapshot)

    # ----------------------------------------------------------------- helpers

    def _hooks_for(self, config: dict | None) -> list[Hook]:
        hooks = []
        for cfg in (config or {}).get("webhooks") or []:
            hook = Hook.from_config(cfg)
            if hook:
                hooks.append(hook)
        return hooks

    def check_name(self, name: str) -> None:
        """Core accepts only the 'default' session (422 like WAHA)."""
        if self.cfg.engine == "core" and name != "default":
            raise SimError(422, CORE_ONLY_DEFAULT)

    def _get(self, name: str) -> Session:
        self.check_name(name)
        session = self.sessions.get(name)
        if session is None:
            raise SimError(404, "Session not found")
        return session

    def get_running(self, name: str) -> Session:
        """The session object WAHA's SessionPipe returns: 404 when missing or stopped."""
        self.check_name(name)
        session = self.sessions.get(name)
        if session is None or not session.running:
            raise SimError(
                404,
                f"We didn't find a session with name '{name}'.\n"
                f"Please start it first by using POST /api/sessions/{name}/start request",
            )
        return session

    def wait_status(self, session: Session, expected: list[str]) -> None:
        """Wait (like WAHA's waitUntilStatus) for one of the expected statuses, then 422."""
        deadline = time.monotonic() + self.cfg.status_wait_seconds
        while session.status not in expected:
            if time.monotonic() >= deadline:
                raise SimError(
                    422,
                    {"error": STATUS_NOT_EXPECTED, "session": session.name, "status": session.status,
                     "expected": expected},
                )
            time.sleep(0.05)

    def info(self, session: Session) -> dict:
        """SessionInfo as WAHA returns it."""
        return {
            "name": session.name,
            "status": session.status,
            "config": session.config,
            "me": session.me,
            "engine": {"engine": ENGINE_NAME},
        }

    # ----------------------------------------------------------------- webhooks

    def emit(self, session: Session, event: str, payload: dict) -> None:
        """Send one event to every hook of the session that subscribed to it."""
        hooks = [h for h in session.hooks if event in h.events]
        if self.global_hook and event in self.global_hook.events:
            hooks.append(self.global_hook)
        if not hooks:
            return
        event_id = new_event_id()
        timestamp = now_ms()
        body = dumps(
            {
                "id": event_id,
                "timestamp": timestamp,
                "event": event,
                "session": session.name,
                "metadata": (session.config or {}).get("metadata"),
                "me": session.me,
                "payload": payload,
                "engine": ENGINE_NAME,
                "environment": self.environment,
            }
        )
        ordered = event == "session.status"
        for hook in hooks:
            self.sender.send(hook, body, event_id, event, session.name, timestamp, ordered)

    def _set_status(self, session: Session, status: str) -> None:
        with session.lock:
            session.status = status
            session.statuses.append({"status": status, "timestamp": now_ms()})
            payload = {"name": session.name, "status": status, "statuses": list(session.statuses)}
        self.emit(session, "session.status", payload)

    # ----------------------------------------------------------------- status machine

    def _start(self, session: Session) -> None:
        with session.lock:
            session.gen += 1
            gen = session.gen
            session.running = True
            self._set_status(session, STARTING)
        self.jobs.call_later(self.cfg.starting_seconds, lambda: self._after_starting(session, gen))

    def _after_starting(self, session: Session, gen: int) -> None:
        with session.lock:
            if session.gen != gen:
                return
            if session.me:
                self._set_status(session, WORKING)
            else:
                self._enter_qr(session, gen)

    def _enter_qr(self, session: Session, gen: int) -> None:
        session.qr_seed = os.urandom(16)
        session.qr_index = 0
        session.pair_code = session.pair_phone = None
        self._set_status(session, SCAN_QR_CODE)
        self.jobs.call_later(self.cfg.qr_rotate_seconds, lambda: self._rotate(session, gen, 0))

    def _rotate(self, session: Session, gen: int, index: int) -> None:
        with session.lock:
            if session.gen != gen or session.status != SCAN_QR_CODE or session.qr_index != index:
                return
            session.qr_index += 1
            self._set_status(session, SCAN_QR_CODE)  # WAHA re-issues SCAN_QR_CODE on every new QR
        self.jobs.call_later(self.cfg.qr_rotate_seconds, lambda: self._rotate(session, gen, index + 1))

    def _stop(self, session: Session) -> None:
        with session.lock:
            session.gen += 1
            session.running = False
            if session.status != STOPPED:
                self._set_status(session, STOPPED)

    # ----------------------------------------------------------------- sessions API

    def list_sessions(self, all_: bool) -> list[dict]:
        """GET /api/sessions."""
        return [self.info(s) for s in list(self.sessions.values()) if all_ or s.status != STOPPED]

    def create(self, body) -> dict:
        """POST /api/sessions."""
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        name = body.get("name")
        if name is None or name == "":
            name = "session_" + new_event_id()[4:]
        if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
            raise bad_request(f"name must be a string of at most {NAME_MAX} letters, digits, '_', '-' or '.'")
        start = body.get("start", True)
        if not isinstance(start, bool):
            raise bad_request("start must be a boolean value")
        config = validate_config(body.get("config"))
        self.check_name(name)
        with self.lock:
            if name in self.sessions:
                raise SimError(422, f"Session '{name}' already exists. Use PUT to update it.")
            session = Session(name, config)
            session.hooks = self._hooks_for(config)
            self.sessions[name] = session
            if start:
                self._start(session)
            self._persist()
        return self.info(session)

    def update(self, name: str, body) -> dict:
        """PUT /api/sessions/{name}."""
        session = self._get(name)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        config = validate_config(body.get("config"))
        with session.lock:
            was_running = session.running
            self._stop(session)
            session.config = config
            session.hooks = self._hooks_for(config)
            if was_running:
                self._start(session)
        self._persist()
        return self.info(session)

    def delete(self, name: str) -> None:
        """DELETE /api/sessions/{name} (idempotent)."""
        self.check_name(name)
        with self.lock:
            session = self.sessions.get(name)
            if session is None:
                return
            self._stop(session)
            session.me = None
            del self.sessions[name]
            self.record_count -= len(session.records)
            self._persist()

    def start(self, name: str) -> dict:
        """POST /api/sessions/{name}/start (idempotent while it runs)."""
        session = self._get(name)
        with session.lock:
            if not session.running or session.status in (STOPPED, FAILED):
                self._start(session)
        self._persist()
        return self.info(session)

    def stop(self, name: str) -> dict:
        """POST /api/sessions/{name}/stop."""
        session = self._get(name)
        self._stop(session)
        self._persist()
        return self.info(session)

    def restart(self, name: str) -> dict:
        """POST /api/sessions/{name}/restart."""
        session = self._get(name)
        with session.lock:
            self._stop(session)
            self._start(session)
        self._persist()
        return self.info(session)

    def logout(self, name: str) -> dict:
        """POST /api/sessions/{name}/logout: forget the account, restart if it was running."""
        session = self._get(name)
        with session.lock:
            was_running = session.running
            self._stop(session)
            session.me = None
            if was_running:
                self._start(session)
        self._persist()
        return self.info(session)

    def me(self, name: str) -> dict | None:
        """GET /api/sessions/{name}/me."""
        return self.get_running(name).me

    # ----------------------------------------------------------------- auth API

    def qr(self, name: str) -> tuple[str, int, Session]:
        """Current raw QR value and its rotation index (waits for SCAN_QR_CODE like WAHA)."""
        session = self.get_running(name)
        self.wait_status(session, [SCAN_QR_CODE])
        with session.lock:
            return raw_value(session.qr_seed, session.qr_index), session.qr_index, session

    def qr_png(self, name: str) -> bytes:
        """PNG of the current QR value (cached per rotation)."""
        value, index, session = self.qr(name)
        cached = session.qr_png
        if cached and cached[0] == session.qr_seed and cached[1] == index:
            return cached[2]
        data = png_bytes(value)
        session.qr_png = (session.qr_seed, index, data)
        return data

    def request_code(self, name: str, body) -> dict:
        """POST /api/{session}/auth/request-code → {code: 'ABCD-EFGH'}."""
        session = self.get_running(name)
        if not isinstance(body, dict) or not isinstance(body.get("phoneNumber"), str):
            raise bad_request("phoneNumber must be a string")
        phone = phone_digits(body["phoneNumber"])
        self.wait_status(session, [SCAN_QR_CODE])
        code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))
        with session.lock:
            session.pair_code, session.pair_phone = code, phone
        return {"code": f"{code[:4]}-{code[4:]}"}

    # ----------------------------------------------------------------- sending

    def _behaviour_for(self, session: Session) -> dict:
        return session.behaviour or self.behaviour

    def _should_fail(self, behaviour: dict, chat: str) -> bool:
        if chat in behaviour["fail_chat_ids"]:
            return True
        if behaviour["fail_rate"] <= 0:
            return False
        with self.rng_lock:
            return self.rng.random() < behaviour["fail_rate"]

    def send(self, kind: str, body) -> dict:
        """POST /api/sendText | sendImage | sendFile."""
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        name = body.get("session") or "default"
        if not isinstance(name, str):
            raise bad_request("session must be a string")
        if not isinstance(body.get("chatId"), str) or not body["chatId"].strip():
            raise bad_request("chatId must be a string", "chatId should not be empty")
        chat = chat_id(body["chatId"])
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, str):
                raise bad_request("text must be a string")
            msg_type, content, media = "chat", text, None
        else:
            media = self._check_file(body.get("file"))
            caption = body.get("caption")
            if caption is not None and not isinstance(caption, str):
                raise bad_request("caption must be a string")
            msg_type = "image" if kind == "image" else "document"
            content = caption or ""
        session = self.get_running(name)
        self.wait_status(session, [WORKING])
        if kind != "text" and self.cfg.engine == "core":
            raise SimError(422, PLUS_ONLY)
        behaviour = self._behaviour_for(session)
        fail = self._should_fail(behaviour, chat)
        if fail and behaviour["fail_mode"] == "http":
            with session.lock:
                session.failed += 1
            raise SimError(
                500,
                {
                    "statusCode": 500,
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "exception": {"message": "Evaluation failed: t: t", "name": "Error"},
                    "request": {"path": f"/api/send{kind.capitalize()}", "method": "POST"},
                    "version": self.environment,
                },
            )
        me_id = (session.me or {}).get("id") or ""
        short_id = "3EB0" + secrets.token_hex(8).upper()
        serialized = f"true_{chat}_{short_id}"
        ts = int(time.time())
        record = Record(serialized, chat, msg_type, content[:1000], ts)
        with session.lock:
            session.sent += 1
            session.sent_by_type[msg_type] += 1
            if fail:
                session.failed += 1
            if self.record_count < self.cfg.max_messages:
                session.records.append(record)
                self.record_count += 1
        if self.store:
            self.store.append(
                {"session": session.name, "id": serialized, "chatId": chat, "type": msg_type,
                 "body": record.body, "timestamp": ts}
            )
        message = {
            "_data": {
                "id": {"fromMe": True, "remote": chat, "id": short_id, "_serialized": serialized},
                "body": content,
                "type": msg_type,
                "t": ts,
                "from": me_id,
                "to": chat,
                "ack": 0,
                "isNewMsg": True,
                "self": "out",
            },
            "id": {"fromMe": True, "remote": chat, "id": short_id, "_serialized": serialized},
            "ack": 0,
            "hasMedia": media is not None,
            "body": content,
            "type": msg_type,
            "timestamp": ts,
            "from": me_id,
            "to": chat,
            "deviceType": "web",
            "isForwarded": False,
            "forwardingScore": 0,
            "isStatus": False,
            "isStarred": False,
            "fromMe": True,
            "hasQuotedMsg": bool(body.get("reply_to")),
            "hasReaction": False,
            "vCards": [],
            "mentionedIds": [],
            "links": [],
        }
        if media is not None:
            message["_data"]["mimetype"] = media["mimetype"]
            message["_data"]["filename"] = media.get("filename")
            message["_data"]["size"] = media["size"]
        self.emit(session, "message.any", self._wa_message(session, record, from_me=True, has_media=media is not None))
        self._schedule_acks(session, record, behaviour, fail, media is not None)
        return message

    @staticmethod
    def _check_file(file) -> dict:
        if not isinstance(file, dict):
            raise bad_request("file must be an object with mimetype and url or data")
        if not isinstance(file.get("mimetype"), str) or "/" not in file["mimetype"]:
            raise bad_request("file.mimetype must be a MIME type")
        if file.get("filename") is not None and not isinstance(file["filename"], str):
            raise bad_request("file.filename must be a string")
        if isinstance(file.get("data"), str) and file["data"]:
            try:
                size = len(base64.b64decode(file["data"], validate=True))
            except (binascii.Error, ValueError):
                raise bad_request("file.data must be base64 encoded")
        elif isinstance(file.get("url"), str) and re.match(r"^https?://", file["url"]):
            size = 0
        else:
            raise bad_request("file must have url (http/https) or data (base64)")
        return {"mimetype": file["mimetype"], "filename": file.get("filename"), "size": size}

    def _wa_message(self, session: Session, record: Record, from_me: bool, has_media: bool = False,
                    push_name: str | None = None) -> dict:
        me_id = (session.me or {}).get("id")
        return {
            "id": record.id,
            "timestamp": record.timestamp,
            "from": me_id if from_me else record.chat_id,
            "fromMe": from_me,
            "source": "api" if from_me else "app",
            "to": record.chat_id if from_me else me_id,
            "participant": None,
            "body": record.body,
            "hasMedia": has_media,
            "media": None,
            "ack": record.ack,
            "ackName": ACK_NAMES.get(record.ack, "UNKNOWN"),
            "vCards": [],
            "_data": {"notifyName": push_name} if push_name else {},
        }

    def _schedule_acks(self, session: Session, record: Record, behaviour: dict, fail: bool, has_media: bool) -> None:
        if fail:
            plan = [(-1, behaviour["server_ms"] or 0)]
        else:
            plan = [(ack, behaviour[key]) for ack, key in ((1, "server_ms"), (2, "device_ms"), (3, "read_ms"))
                    if behaviour[key] is not None]
        for ack, delay_ms in plan:
            self.jobs.call_later(delay_ms / 1000.0,
                                 lambda ack=ack: self._ack(session, record, ack, has_media))

    def _ack(self, session: Session, record: Record, ack: int, has_media: bool) -> None:
        if self.sessions.get(session.name) is not session:
            return  # deleted meanwhile
        with session.lock:
            if ack != -1 and record.ack >= ack:
                return
            record.ack = ack
            session.acks[ACK_NAMES[ack]] += 1
        self.emit(session, "message.ack", self._wa_message(session, record, from_me=True, has_media=has_media))

    # ----------------------------------------------------------------- fake network (/_sim/)

    def scan(self, name: str, body) -> dict:
        """The phone scans the QR (or types the pairing code): the session becomes WORKING."""
        session = self.get_running(name)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        phone = phone_digits(body.get("phone"))
        push_name = body.get("pushName") or phone
        if not isinstance(push_name, str):
            raise bad_request("pushName must be a string")
        self.wait_status(session, [SCAN_QR_CODE])
        with session.lock:
            if session.status != SCAN_QR_CODE:
                raise SimError(422, {"error": STATUS_NOT_EXPECTED, "session": name, "status": session.status,
                                     "expected": [SCAN_QR_CODE]})
            if body.get("value") is not None and body["value"] != raw_value(session.qr_seed, session.qr_index):
                raise SimError(422, "QR code expired or not the current one")
            if body.get("code") is not None:
                code = str(body["code"]).replace("-", "").upper()
                if not session.pair_code or code != session.pair_code:
                    raise SimError(422, "Pairing code is not the one requested")
                if session.pair_phone and session.pair_phone != phone:
                    raise SimError(422, "Pairing code was requested for another phone number")
            session.me = {"id": f"{phone}@c.us", "pushName": push_name}
            session.gen += 1  # cancels pending QR rotations
            self._set_status(session, WORKING)
        self._persist()
        return self.info(session)

    def inbound(self, name: str, body) -> dict:
        """A contact writes to the session: 'message' (and 'message.any') webhooks."""
        session = self.get_running(name)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        sender = body.get("from")
        if not isinstance(sender, str) or not sender.strip():
            raise bad_request("from must be a phone number or chat id")
        text = body.get("body", "")
        if not isinstance(text, str):
            raise bad_request("body must be a string")
        push_name = body.get("pushName")
        self.wait_status(session, [WORKING])
        chat = chat_id(sender)
        record = Record(f"false_{chat}_{secrets.token_hex(16).upper()}", chat, "chat", text, int(time.time()), 1)
        with session.lock:
            session.inbound += 1
        message = self._wa_message(session, record, from_me=False, has_media=bool(body.get("hasMedia")),
                                   push_name=push_name)
        self.emit(session, "message", message)
        self.emit(session, "message.any", message)
        return message

    def fail(self, name: str, body) -> dict:
        """The session breaks (device unlinked, ban...): FAILED and a session.status webhook."""
        session = self.get_running(name)
        with session.lock:
            session.gen += 1
            self._set_status(session, FAILED)
        return self.info(session)

    def set_behaviour(self, body, name: str | None = None) -> dict:
        """PUT /_sim/behaviour or /_sim/sessions/{name}/behaviour."""
        if name is None:
            self.behaviour = validate_behaviour(body, self.behaviour)
            if "seed" in body and body["seed"] is not None:
                with self.rng_lock:
                    self.rng = random.Random(body["seed"])
            return self.behaviour
        session = self._get(name)
        session.behaviour = validate_behaviour(body, session.behaviour or self.behaviour)
        if "seed" in body and body["seed"] is not None:
            with self.rng_lock:
                self.rng = random.Random(body["seed"])
        return session.behaviour

    def clear_behaviour(self, name: str) -> dict:
        """DELETE /_sim/sessions/{name}/behaviour: back to the global one."""
        self._get(name).behaviour = None
        return self.behaviour

    def get_behaviour(self, name: str | None = None) -> dict:
        """Current behaviour (global or the session's effective one)."""
        if name is None:
            return self.behaviour
        return self._behaviour_for(self._get(name))

    def stats(self) -> dict:
        """GET /_sim/stats."""
        sessions = {}
        for name, s in list(self.sessions.items()):
            with s.lock:
                sessions[name] = {
                    "status": s.status,
                    "sent": s.sent,
                    "sent_by_type": dict(s.sent_by_type),
                    "inbound": s.inbound,
                    "acks": dict(s.acks),
                    "failed": s.failed,
                    "records": len(s.records),
                }
        webhooks = self.sender.snapshot()
        return {"sessions": sessions, "webhooks": webhooks, "uptime": round(time.time() - self.started_at, 3)}

    def messages(self, name: str, offset: int, limit: int) -> dict:
        """GET /_sim/sessions/{name}/messages."""
        session = self._get(name)
        records = session.records[offset: offset + limit]
        return {"total": session.sent, "offset": offset, "messages": [r.as_dict() for r in records]}

    def webhook_log(self, limit: int) -> dict:
        """GET /_sim/webhooks."""
        items = list(self.sender.recent)[-limit:]
        return {
            "deliveries": [
                {"id": d.event_id, "event": d.event, "session": d.session, "url": d.hook.url,
                 "attempts": d.attempts, "status": d.last_status, "delivered": d.delivered}
                for d in items
            ]
        }

    def reset(self) -> dict:
        """POST /_sim/reset: zero the counters and forget message records."""
        with self.lock:
            for s in self.sessions.values():
                with s.lock:
                    s.records = []
                    s.sent = s.inbound = s.failed = 0
                    s.sent_by_type.clear()
                    s.acks.clear()
            self.record_count = 0
            if self.store:
                self.store.truncate_messages()
        self.sender.reset()
        return {"reset": True}

    def health(self) -> dict:
        """GET /health (terminus-shaped)."""
        if self.cfg.engine == "core":
            raise SimError(422, PLUS_ONLY)
        working = sum(1 for s in list(self.sessions.values()) if s.status == WORKING)
        detail = {"sessions": {"status": "up", "total": len(self.sessions), "working": working}}
        return {"status": "ok", "info": detail, "error": {}, "details": detail}
