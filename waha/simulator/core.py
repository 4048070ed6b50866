"""The simulated WAHA: sessions, their status machine, the fake network, stats and persistence."""
from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from urllib.parse import urlsplit

from . import BROWSER, PLUS_VERSION, WAHA_VERSION, engines
from . import media as media_files
from .config import Config
from .engines import ACK_NAMES
from .jobs import Scheduler
from .qr import png_bytes, raw_value
from .webhooks import ALL_EVENTS, EVENTS, Hook, WebhookSender, dumps, new_event_id

STOPPED, STARTING, SCAN_QR_CODE, WORKING, FAILED = "STOPPED", "STARTING", "SCAN_QR_CODE", "WORKING", "FAILED"
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
DOCS_URL = "https://waha.devlike.pro/"
CORE_ONLY_DEFAULT = (
    "WAHA Core support only 'default' session. If you want to run more then one WhatsApp account - "
    f"please get WAHA PLUS version. Check this out: {DOCS_URL}"
)
PLUS_ONLY = f"The feature is available only in Plus version. Check this out: {DOCS_URL}"
STATUS_NOT_EXPECTED = "Session status is not as expected. Try again later or restart the session"
# NowebInMemoryStore.errorMessage: chats and messages of a NOWEB session started without its store.
NOWEB_STORE_OFF = (
    'Enable NOWEB store "config.noweb.store.enabled=True" and "config.noweb.store.full_sync=True" when starting '
    "a new session. Read more: https://waha.devlike.pro/docs/engines/noweb#store"
)
CHAT_HISTORY_MAX = 1000  # messages kept per chat for GET /api/{session}/chats/{chatId}/messages
NAME_MAX = 64 - len("waha_noweb")
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
PAIRING_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ123456789"
HTTP_REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}


class AnswerLost(Exception):
    """The request was carried out but its answer never reaches the caller: the server closes the
    connection without writing a response (behaviour fail_mode "lost_answer")."""


class SimError(Exception):
    """An HTTP error with WAHA's (NestJS) body."""

    def __init__(self, status: int, body) -> None:
        super().__init__(str(body))
        self.status = status
        if isinstance(body, str):
            body = {"statusCode": status, "message": body, "error": HTTP_REASONS.get(status, "Error")}
        self.body = body


def bad_request(*messages: str) -> SimError:
    """400 with class-validator style messages."""
    return SimError(400, {"statusCode": 400, "message": list(messages), "error": "Bad Request"})


def proxy_reachable(config: dict | None, timeout: float = 1.0) -> bool:
    """Whether the session's proxy accepts a TCP connection. Only loopback proxies are tried (the
    simulator never dials out); a session without a proxy, or with a remote one, counts as reachable."""
    server = ((config or {}).get("proxy") or {}).get("server")
    if not isinstance(server, str) or not server:
        return True
    parts = urlsplit(server if "://" in server else "http://" + server)
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if host not in LOOPBACK_HOSTS:
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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
        self.answers_lost = 0
        # What the engine's message store holds, per chat (@c.us form): (record, fromMe, pushName, media).
        self.history: dict[str, deque] = {}


class Store:
    """sessions.json (atomic rewrite) and messages.jsonl (append) in the data dir."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.messages_path = os.path.join(directory, "messages.jsonl")
        self._lock = threading.Lock()
        self._messages = open(self.messages_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends

    def load(self) -> tuple[dict, list[dict]]:
        """Saved sessions and message records."""
        sessions = self.read("sessions.json").get("sessions", {})
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
        self.write("sessions.json", {"version": 1, "sessions": sessions})

    def read(self, filename: str) -> dict:
        """A JSON file of the data dir ({} when missing)."""
        path = os.path.join(self.dir, filename)
        if not os.path.exists(path):
            return {}
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    def write(self, filename: str, content: dict) -> None:
        """Replace a JSON file of the data dir atomically."""
        data = json.dumps(content, ensure_ascii=False, indent=1)
        with self._lock:
            fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=self.dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, os.path.join(self.dir, filename))
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
                if not isinstance(events, list) or any(e != "*" and e not in ALL_EVENTS for e in events):
                    errors.append(f"{p}.each value in events must be one of the following values: "
                                  + ", ".join(EVENTS))
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
                            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
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
        errors.append("config.metadata accepts string key-value pairs only")
    if config.get("debug") is not None and not isinstance(config.get("debug"), bool):
        errors.append("config.debug must be a boolean value")
    noweb = config.get("noweb")
    if noweb is not None:
        if not isinstance(noweb, dict):
            errors.append("config.noweb must be an object")
        else:
            if "markOnline" in noweb and not isinstance(noweb["markOnline"], bool):
                errors.append("config.noweb.markOnline must be a boolean value")
            store = noweb.get("store")
            if store is not None and not isinstance(store, dict):
                errors.append("config.noweb.store must be an object")
            elif store is not None:
                errors.extend(f"config.noweb.store.{key} must be a boolean value" for key in ("enabled", "fullSync")
                              if key in store and not isinstance(store[key], bool))
    if errors:
        raise bad_request(*errors)
    return config


# The SessionConfig fields WAHA 2024.10 knows; its validation pipe (whitelist) drops the others.
KNOWN_CONFIG = {
    "proxy": {"server": None, "username": None, "password": None},
    "webhooks": [{"url": None, "events": None, "hmac": {"key": None},
                  "retries": {"delaySeconds": None, "attempts": None, "policy": None},
                  "customHeaders": [{"name": None, "value": None}]}],
    "metadata": None,
    "debug": None,
    "noweb": {"store": {"enabled": None, "fullSync": None}, "markOnline": None},
}


def whitelisted(value, known=KNOWN_CONFIG):
    """A validated config without the fields WAHA does not know (class-transformer's whitelist)."""
    if known is None or value is None:
        return value
    if isinstance(known, list):
        return [whitelisted(item, known[0]) for item in value] if isinstance(value, list) else value
    if isinstance(value, dict):
        return {key: whitelisted(item, known[key]) for key, item in value.items() if key in known}
    return value


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
        if body["fail_mode"] not in ("ack", "http", "lost_answer"):
            raise bad_request("fail_mode must be ack, http or lost_answer")
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
        self.profile = cfg.profile
        self.engine = cfg.wa_engine
        version = WAHA_VERSION if cfg.tier == "CORE" else PLUS_VERSION
        self.environment = {"version": version, "engine": self.engine, "tier": cfg.tier, "browser": BROWSER}
        self.sender = WebhookSender(cfg.webhook_workers, cfg.webhook_timeout, cfg.max_pending_webhooks,
                                    f"WAHA/{version}")
        self.global_hook = (Hook.from_config(cfg.global_hook.as_config(), plain=not self.profile.signed_webhooks)
                            if cfg.global_hook else None)
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
        self.files = media_files.FileStore(cfg.files_lifetime)
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
        self._restore_records(records)
        if self.cfg.restart_sessions:
            for name, data in saved.items():
                if data.get("running"):
                    self._start(self.sessions[name])

    def _restore_records(self, records: list[dict]) -> None:
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
            hook = Hook.from_config(cfg, plain=not self.profile.signed_webhooks)
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
            "engine": {"engine": self.engine},
        }

    def get_info(self, name: str) -> dict:
        """GET /api/sessions/{name}."""
        # WAHA Core's getSessionInfo answers null (→ 404) for any name but 'default', not 422
        session = self.sessions.get(name)
        if session is None or (self.cfg.engine == "core" and name != "default"):
            raise SimError(404, "Session not found")
        return self.info(session)

    def environment_vars(self, everything: bool) -> dict:
        """GET /api/server/environment: the process environment (WAHA_*, WHATSAPP_*, DEBUG unless all)."""
        env = dict(os.environ)
        env.setdefault("WHATSAPP_DEFAULT_ENGINE", self.engine)
        if self.cfg.api_key:
            env.setdefault("WHATSAPP_API_KEY", self.cfg.api_key)
        if not everything:
            env = {k: v for k, v in env.items() if k.startswith(("WAHA_", "WHATSAPP_")) or k == "DEBUG"}
        return dict(sorted(env.items()))

    def server_status(self) -> dict:
        """GET /api/server/status."""
        now = now_ms()
        return {"startTimestamp": int(self.started_at * 1000), "uptime": now - int(self.started_at * 1000),
                "worker": {"id": ""}}

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
        data = {"id": event_id, "timestamp": timestamp} if self.profile.event_ids else {}
        data.update(event=event, session=session.name)
        if self.profile.event_ids or "metadata" in (session.config or {}):
            data["metadata"] = (session.config or {}).get("metadata")  # Core: undefined → left out
        data.update(me=session.me, payload=payload, engine=self.engine, environment=self.environment)
        body = dumps(data)
        ordered = event == "session.status"
        for hook in hooks:
            self.sender.send(hook, body, event_id, event, session.name, timestamp, ordered)

    def _set_status(self, session: Session, status: str) -> None:
        with session.lock:
            session.status = status
            session.statuses.append({"status": status, "timestamp": now_ms()})
            payload = {"name": session.name, "status": status}
            if self.profile.status_history:
                payload["statuses"] = list(session.statuses)
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
        if self.profile.probe_proxy and not proxy_reachable(session.config):
            # NOWEB cannot reach WhatsApp: the connection closes, WAHA starts the client again after
            # START_ATTEMPT_DELAY_SECONDS (2) and says STARTING again, for ever.
            self.jobs.call_later(self.cfg.start_retry_seconds, lambda: self._start_again(session, gen))
            return
        with session.lock:
            if session.gen != gen:
                return
            if session.me:
                self._set_status(session, WORKING)
            else:
                self._enter_qr(session, gen)

    def _start_again(self, session: Session, gen: int) -> None:
        with session.lock:
            if session.gen != gen:
                return
            self._set_status(session, STARTING)
        self.jobs.call_later(self.cfg.starting_seconds, lambda: self._after_starting(session, gen))

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
        lost = fail and behaviour["fail_mode"] == "lost_answer"
        fail = fail and not lost  # a lost answer is a send WhatsApp got: its acks come as usual
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
        serialized = engines.serialized(True, chat, engines.sent_short_id(self.engine))
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
        full = Record(serialized, chat, msg_type, content, ts)
        self._remember(session, record, True, None, media)
        message = engines.sent_body(self.engine, full, me_id, media, bool(body.get("reply_to")))
        self.emit(session, "message.any",
                  engines.own_message_payload(self.engine, full, session.me and me_id, message, media is not None))
        self._schedule_acks(session, record, behaviour, fail, media is not None)
        if lost:
            with session.lock:
                session.answers_lost += 1
            raise AnswerLost(serialized)
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

    def _schedule_acks(self, session: Session, record: Record, behaviour: dict, fail: bool, has_media: bool) -> None:
        if fail:
            plan = [(-1, behaviour["server_ms"] or 0)]
        else:
            levels = engines.ack_levels(self.engine)
            plan = [(ack, behaviour[key]) for ack, key in ((1, "server_ms"), (2, "device_ms"), (3, "read_ms"))
                    if behaviour[key] is not None and ack in levels]
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
        me_id = (session.me or {}).get("id")
        self.emit(session, "message.ack", engines.ack_payload(self.engine, record, ack, me_id, has_media))

    # ----------------------------------------------------------------- the engine's message store

    def store_enabled(self, session: Session) -> bool:
        """NOWEB keeps chats and messages only with config.noweb.store.enabled (else its in-memory
        store answers 400); WEBJS and GOWS read them from the engine itself."""
        if self.engine != "NOWEB":
            return True
        noweb = (session.config or {}).get("noweb")
        store = noweb.get("store") if isinstance(noweb, dict) else None
        return isinstance(store, dict) and store.get("enabled") is True

    def _remember(self, session: Session, record: Record, from_me: bool, push_name: str | None,
                  media: dict | None) -> None:
        """A message the engine's store keeps (only while it is on, as NOWEB's upsert does)."""
        if not self.store_enabled(session):
            return
        with session.lock:
            chat = session.history.setdefault(record.chat_id, deque(maxlen=CHAT_HISTORY_MAX))
            chat.append((record, from_me, push_name, media))

    def chat_messages(self, name: str, chat: str, query: dict) -> list[dict]:
        """GET /api/{session}/chats/{chatId}/messages (chats.controller.ts getChatMessages): a WORKING
        session (WorkingSessionPipe: 404 unless started, 422 after the status wait), then the store (NOWEB
        without it: 400), newest first (ORDER BY messageTimestamp DESC LIMIT limit, default 100)."""
        session = self.get_running(name)
        self.wait_status(session, [WORKING])
        if not self.store_enabled(session):
            raise SimError(400, NOWEB_STORE_OFF)
        try:
            limit = max(0, int(query.get("limit", ["100"])[0]))
        except ValueError:
            limit = 100
        me_id = (session.me or {}).get("id")
        with session.lock:
            kept = list(session.history.get(chat_id(chat), ()))
        kept.reverse()
        kept.sort(key=lambda item: item[0].timestamp, reverse=True)  # stable: the latest first among equals
        return [engines.stored_message(self.engine, record, me_id, from_me, push_name, media)
                for record, from_me, push_name, media in kept[:limit]]

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
        raw_media, data = self._inbound_file(body)
        self.wait_status(session, [WORKING])
        chat = chat_id(sender)
        record = Record(engines.serialized(False, chat, engines.inbound_short_id()), chat, "chat", text,
                        int(time.time()), 1)
        with session.lock:
            session.inbound += 1
        media = self._received_media(session.name, record, raw_media, data)
        self._remember(session, record, False, push_name, media)
        message = engines.inbound_payload(self.engine, record, (session.me or {}).get("id"), push_name, media,
                                          raw_media)
        self.emit(session, "message", message)
        self.emit(session, "message.any", message)
        return message

    @staticmethod
    def _inbound_file(body: dict) -> tuple[dict | None, bytes | None]:
        """The file a contact sends: `media: {mimetype, filename?, data (base64)}`; `hasMedia: true`
        alone is a photo whose download fails (no data)."""
        given = body.get("media")
        if given is None:
            return ({"mimetype": "image/jpeg", "filename": None}, None) if body.get("hasMedia") else (None, None)
        if not isinstance(given, dict) or not isinstance(given.get("mimetype"), str) or "/" not in given["mimetype"]:
            raise bad_request("media must be an object with a mimetype and base64 data")
        if given.get("filename") is not None and not isinstance(given["filename"], str):
            raise bad_request("media.filename must be a string")
        try:
            data = base64.b64decode(given.get("data") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise bad_request("media.data must be base64") from None
        return {"mimetype": given["mimetype"], "filename": given.get("filename")}, data or None

    def _received_media(self, session_name: str, record: Record, raw: dict | None, data: bytes | None):
        """MediaManager.processMedia: saved and linked, skipped (url null) or failed (error)."""
        if raw is None:
            return None
        media = {"url": None, "filename": raw.get("filename"), "mimetype": raw["mimetype"]}
        if not media_files.wanted(raw["mimetype"], self.cfg.download_media, self.cfg.files_mimetypes):
            return media
        if data is None:
            media["error"] = {"details": "Error: Message has no media, but it has media flag in the engine"}
            return media
        own_id = engines.short_of(record.id) if self.engine == "NOWEB" else record.id
        key = f"{session_name}/{own_id}.{media_files.extension(raw['mimetype'])}"
        self.files.save(key, data, raw["mimetype"])
        media["url"] = f"{media_files.base_url(self.cfg)}/api/files/{key}"
        return media

    def file(self, key: str) -> tuple[bytes, str]:
        """GET /api/files/<key>: serve-static's 404 when absent or expired."""
        found = self.files.get(key)
        if found is None:
            raise SimError(404, {"message": f"Cannot GET /api/files/{key}", "error": "Not Found",
                                 "statusCode": 404})
        return found

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
                    "answers_lost": s.answers_lost,
                    "records": len(s.records),
                }
        webhooks = self.sender.snapshot()
        return {"sessions": sessions, "webhooks": webhooks, "files": self.files.stats(),
                "uptime": round(time.time() - self.started_at, 3)}

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
                    s.sent = s.inbound = s.failed = s.answers_lost = 0
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
