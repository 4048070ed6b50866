"""The `core-2024.10` profile: WAHA Core 2024.10.8's session manager (src/core/manager.core.ts and
src/api/sessions.controller.ts), as the real server answers (../shared/waha-core).

One session, `default`, in one of three states: REMOVED (after DELETE), STOPPED (what a fresh
server has) or running. Its config lives in memory only: after a process restart it is STOPPED
with `config: null`. The pairing (`me`) survives, as the engine's auth files do. A stop of a
running session takes SESSION_STOP_TIMEOUT (3 s); calls that need a status wait 5 s for it.
"""
from __future__ import annotations

import threading
import time

from .core import (
    NAME_MAX,
    NAME_RE,
    PLUS_ONLY,
    SCAN_QR_CODE,
    STARTING,
    STOPPED,
    WORKING,
    Session,
    SimError,
    Simulator,
    bad_request,
    new_event_id,
    validate_config,
    whitelisted,
)

DEFAULT = "default"
REMOVED, RUNNING = "REMOVED", "RUNNING"
MISSING = object()  # a config given as undefined: left out of every answer


class Core2024Simulator(Simulator):
    """WAHA Core 2024.10.8 with its single `default` session."""

    def __init__(self, cfg) -> None:
        self.slot = STOPPED
        self.config = None  # SessionManagerCore.sessionConfig: null at start
        self.started_config = None  # what the running session was started with
        self.manager_lock = threading.RLock()  # WAHA's per-name AsyncLock around every session call
        super().__init__(cfg)
        self.sessions.setdefault(DEFAULT, Session(DEFAULT, None))

    # ----------------------------------------------------------------- persistence: only the pairing

    def _restore(self) -> None:
        session = Session(DEFAULT, None, self.store.read("auth.json").get("me"))
        self.sessions[DEFAULT] = session
        _, records = self.store.load()
        self._restore_records(records)

    def _persist(self) -> None:
        if self.store:
            self.store.write("auth.json", {"me": self.sessions[DEFAULT].me})

    def close(self) -> None:
        """SIGTERM: WAHA stops the running session first (its STOPPED webhook goes out)."""
        with self.manager_lock:
            if self.slot == RUNNING:
                self._stop(self.sessions[DEFAULT])
                self.slot = STOPPED
        self.sender.flush(2.0)
        super().close()

    # ----------------------------------------------------------------- helpers

    def _get(self, name: str) -> Session:
        self.check_name(name)
        return self.sessions[DEFAULT]

    def get_running(self, name) -> Session:
        """WAHA's getSession: 422 for another name, 404 unless running."""
        self.check_name(name)
        if self.slot != RUNNING:
            raise SimError(
                404,
                f"We didn't find a session with name '{name}'.\n"
                f"Please start it first by using POST /api/sessions/{name}/start request",
            )
        return self.sessions[DEFAULT]

    def _exists(self, name: str) -> bool:
        self.check_name(name)
        return self.slot != REMOVED

    def _must_exist(self, name: str) -> None:
        if not self._exists(name):
            raise SimError(404, "Session not found")

    def _entry(self) -> dict | None:
        session = self.sessions[DEFAULT]
        if self.slot == REMOVED:
            return None
        config = self.config if self.slot == STOPPED else self.started_config
        entry = {"name": DEFAULT, "status": STOPPED if self.slot == STOPPED else session.status}
        if config is not MISSING:
            entry["config"] = config
        entry["me"] = session.me if self.slot == RUNNING else None
        return entry

    def info(self, session: Session | None = None) -> dict | None:
        """getSessionInfo: the entry plus the engine (empty while stopped); None once removed."""
        entry = self._entry()
        if entry is None:
            return None
        return {**entry, "engine": {"engine": self.engine} if self.slot == RUNNING else {}}

    def _start_default(self) -> None:
        session = self.sessions[DEFAULT]
        self.started_config = self.config
        session.config = None if self.config is MISSING else self.config
        session.hooks = self._hooks_for(session.config)
        session.history = {}  # Core's NOWEB store is an in-memory SQLite, made anew at every start
        self.slot = RUNNING
        self._start(session)

    def _stop_default(self) -> None:
        if self.slot != RUNNING:
            return
        self._stop(self.sessions[DEFAULT])
        self.slot = STOPPED
        time.sleep(self.cfg.stop_seconds)  # SESSION_STOP_TIMEOUT, inside the lock like WAHA

    @staticmethod
    def _config_of(body: dict):
        if "config" not in body:
            return MISSING
        config = whitelisted(validate_config(body["config"]))
        noweb = (config or {}).get("noweb")
        if isinstance(noweb, dict):  # class-transformer fills NowebConfig's and NowebStoreConfig's defaults
            noweb = {**noweb, "markOnline": noweb.get("markOnline", True)}
            if isinstance(noweb.get("store"), dict):
                noweb["store"] = {"enabled": False, "fullSync": False, **noweb["store"]}
            config = {**config, "noweb": noweb}
        return config

    # ----------------------------------------------------------------- sessions API

    def list_sessions(self, all_: bool) -> list[dict]:
        """GET /api/sessions: [] unless running, or all=true and not removed."""
        entry = self._entry()
        if entry is None or (self.slot == STOPPED and not all_):
            return []
        return [entry]

    def get_info(self, name: str) -> dict:
        """GET /api/sessions/{name}: 404 for another name (no 422 here) or once removed."""
        info = self.info() if name == DEFAULT else None
        if info is None:
            raise SimError(404, "Session not found")
        return info

    def create(self, body) -> dict | None:
        """POST /api/sessions; `start` defaults to false; the answer is empty while `default` is removed."""
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        name = body.get("name") or "session_" + new_event_id()[4:]
        if not isinstance(name, str) or len(name) > NAME_MAX or not NAME_RE.match(name):
            raise bad_request(f"name must be a string of at most {NAME_MAX} letters, digits, '_', '-' or '.'")
        start = body.get("start", False)
        if not isinstance(start, bool):
            raise bad_request("start must be a boolean value")
        config = self._config_of(body)
        with self.manager_lock:
            if self._exists(name):
                raise SimError(422, f"Session '{name}' already exists. Use PUT to update it.")
            self.config = config
            if start:
                self._start_default()
            return self.info()

    def update(self, name: str, body) -> dict | None:
        """PUT /api/sessions/{name}: stop (if running), keep the config, start again if it was running."""
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        config = self._config_of(body)
        with self.manager_lock:
            self._must_exist(name)
            was_running = self.slot == RUNNING
            self._stop_default()
            self.config = config
            if was_running:
                self._start_default()
            return self.info()

    def delete(self, name: str) -> None:
        """DELETE /api/sessions/{name}: stop, logout, and `default` is removed (until a create starts it)."""
        with self.manager_lock:
            self.check_name(name)
            self._stop_default()
            self.sessions[DEFAULT].me = None
            self._persist()
            self.slot, self.config = REMOVED, MISSING

    def start(self, name: str) -> dict | None:
        """POST /api/sessions/{name}/start: 422 when it is already running."""
        with self.manager_lock:
            self._must_exist(name)
            if self.slot == RUNNING:
                raise SimError(422, f"Session '{DEFAULT}' is already started.")
            self._start_default()
            return self.info()

    def stop(self, name: str) -> dict | None:
        """POST /api/sessions/{name}/stop (empty answer once removed)."""
        with self.manager_lock:
            self.check_name(name)
            self._stop_default()
            return self.info()

    def restart(self, name: str) -> dict | None:
        """POST /api/sessions/{name}/restart."""
        with self.manager_lock:
            self._must_exist(name)
            self._stop_default()
            self._start_default()
            return self.info()

    def logout(self, name: str) -> dict | None:
        """POST /api/sessions/{name}/logout: forget the account; a running session starts again."""
        with self.manager_lock:
            self._must_exist(name)
            was_running = self.slot == RUNNING
            self._stop_default()
            self.sessions[DEFAULT].me = None
            self._persist()
            if was_running:
                self._start_default()
            return self.info()

    # ----------------------------------------------------------------- auth and sending

    def request_code(self, name: str, body) -> dict:
        """POST /api/{session}/auth/request-code, NOWEB's rules.

        While STARTING WAHA waits for the engine's next QR; when the engine never gets one (no
        WhatsApp behind the proxy) the real call never answers. Here the wait is bounded: after
        status-wait-seconds the answer is a 500 in WAHA's exception shape.
        """
        session = self.get_running(name)
        if isinstance(body, dict) and body.get("method"):
            raise SimError(422, "NOWEB engine doesn't support any 'method', remove it and try again")
        deadline = time.monotonic() + self.cfg.status_wait_seconds
        while session.status == STARTING and time.monotonic() < deadline:
            time.sleep(0.05)
        if session.status == STARTING:
            raise SimError(500, {
                "statusCode": 500,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "exception": {"message": "Timed out waiting for the QR code (the session is still STARTING)",
                              "name": "Error"},
                "request": {"path": f"/api/{name}/auth/request-code", "method": "POST",
                            "body": body if isinstance(body, dict) else {}, "query": {}},
                "version": self.environment,
            })
        if session.status != SCAN_QR_CODE:
            raise SimError(
                422, f"Can request code only in SCAN_QR_CODE status. The current status is {session.status}"
            )
        return super().request_code(name, body)

    def send(self, kind: str, body) -> dict:
        """POST /api/send*: the session comes first (no default name), then WORKING, then Plus-only media."""
        name = body.get("session") if isinstance(body, dict) else None
        session = self.get_running(name)
        self.wait_status(session, [WORKING])
        if kind != "text":
            raise SimError(422, PLUS_ONLY)
        return super().send(kind, body)
