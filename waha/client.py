"""HTTP client of the WAHA API (the real server and the simulator speak the same API).

Errors become exceptions that say what went wrong (all are WahaError):
ContainerUnreachable (refused, timed out), WahaServerError (5xx), and WahaRequestError (4xx)
with its precise kinds Unauthorized (401), SessionNotFound (404), CoreSessionLimit (422 on
Core), SessionAlreadyExists (422), SessionAlreadyStarted (422), FeatureUnavailable (422: a
Plus feature asked of Core; 400: a NOWEB session without its store asked for chats or messages)
and SessionNotReady (422: not WORKING yet).
Only safe or idempotent calls are retried (reads, PUT/DELETE, and the session
start/stop/restart which WAHA documents as idempotent); a send is never repeated.
Starting a started session is success (Core answers 422 "already started").
"""
from __future__ import annotations

import base64
import threading
import time
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 30
RETRY_STATUSES = {502, 503, 504}
# What NOWEB answers (400) for chats and messages when the session's config.noweb.store is off.
NOWEB_STORE_OFF = "Enable NOWEB store"


class WahaError(Exception):
    """Something went wrong talking to a WAHA server."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class ContainerUnreachable(WahaError):
    """The container did not answer (refused, timed out, reset)."""


class WahaServerError(WahaError):
    """5xx: WAHA failed while handling the request."""


class WahaRequestError(WahaError):
    """4xx: WAHA refused the request."""


class Unauthorized(WahaRequestError):
    """401: the API key was refused."""


class SessionNotFound(WahaRequestError):
    """404: no such session in this container (or it is not started)."""


class CoreSessionLimit(WahaRequestError):
    """422: WAHA Core only supports the session 'default'."""


class SessionAlreadyExists(WahaRequestError):
    """422: a session with that name already exists."""


class SessionAlreadyStarted(WahaRequestError):
    """422: the session is already started (WAHA Core; Plus answers 201)."""


class FeatureUnavailable(WahaRequestError):
    """The feature needs another tier, engine or session config: 422 "... is available only in Plus
    version", or 400 "Enable NOWEB store ..." (chats and messages of a NOWEB session without its store)."""


class SessionNotReady(WahaRequestError):
    """422: the session is not in the status the call needs (e.g. sending before WORKING)."""


_local = threading.local()


def _http() -> requests.Session:
    """One keep-alive HTTP session per thread (requests.Session is not thread-safe)."""
    http = getattr(_local, "http", None)
    if http is None:
        http = requests.Session()
        # Containers are reached directly: no proxy or .netrc from the environment (and
        # requests skips reading them on every call).
        http.trust_env = False
        adapter = HTTPAdapter(pool_connections=64, pool_maxsize=64, max_retries=0)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
        _local.http = http
    return http


class WahaClient:
    """The API of one WAHA container."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        retries: int = 2,
        backoff: float = 0.3,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    @classmethod
    def for_container(cls, container, **kwargs) -> WahaClient:
        """A client for a waha.models.WahaContainer."""
        return cls(container.base_url, container.api_key, **kwargs)

    # --- transport ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        safe: bool | None = None,
        raw: bool = False,
        timeout: tuple[float, float] | None = None,
    ) -> Any:
        """Send one request; retry it only when `safe` (default: GET, HEAD, PUT, DELETE)."""
        if safe is None:
            safe = method.upper() in ("GET", "HEAD", "PUT", "DELETE")
        attempts = 1 + (self.retries if safe else 0)
        url = f"{self.base_url}{path}"
        headers = {"X-Api-Key": self.api_key, "Accept": "application/json"}
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = _http().request(
                    method, url, json=json, params=params, headers=headers, timeout=timeout or self.timeout
                )
            except requests.ConnectionError as exc:
                # Unsafe calls get one attempt: a reset may come after WAHA acted on it.
                if last:
                    raise ContainerUnreachable(f"WAHA at {self.base_url} is unreachable: {exc}") from exc
            except requests.Timeout as exc:
                if last:
                    raise ContainerUnreachable(f"WAHA at {self.base_url} did not answer in time: {exc}") from exc
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return self._result(response, raw)
            time.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")

    def _result(self, response: requests.Response, raw: bool) -> Any:
        status = response.status_code
        if status < 400:
            if raw:
                return response.content
            if not response.content:
                return None
            if "json" in response.headers.get("Content-Type", ""):
                return response.json()
            return response.content
        try:
            body = response.json()
        except ValueError:
            body = response.text
        message = _message(body) or response.reason
        where = f"{response.request.method} {response.request.path_url}"
        if status == 401:
            raise Unauthorized(f"WAHA refused the API key ({where}): {message}", status, body)
        if status == 400 and NOWEB_STORE_OFF in str(message):
            raise FeatureUnavailable(f"{message} ({where})", status, body)
        if status == 404:
            raise SessionNotFound(f"Not found ({where}): {message}", status, body)
        if status == 422:
            text = str(message)
            if "only 'default' session" in text or "only support 'default'" in text.lower():
                raise CoreSessionLimit(f"WAHA Core supports only the session 'default': {text}", status, body)
            if "already exists" in text:
                raise SessionAlreadyExists(text, status, body)
            if "already started" in text:
                raise SessionAlreadyStarted(text, status, body)
            if "available only in" in text:
                raise FeatureUnavailable(text, status, body)
            if "status is not as expected" in text:
                raise SessionNotReady(f"{text} ({where}): {body}", status, body)
        if status >= 500:
            raise WahaServerError(f"WAHA failed with {status} ({where}): {message}", status, body)
        raise WahaRequestError(f"WAHA refused the request with {status} ({where}): {message}", status, body)

    def download(self, path: str, limit: int, timeout: tuple[float, float] | None = None) -> bytes | None:
        """A file this server serves (GET path, streamed, no redirects): its bytes, or None as soon as it
        is known to exceed `limit` bytes. Raises ContainerUnreachable (no answer, time out) and, for any
        answer but 200, the error _result gives it (a redirect: WahaRequestError)."""
        try:
            with _http().get(f"{self.base_url}{path}", headers={"X-Api-Key": self.api_key}, stream=True,
                             allow_redirects=False, timeout=timeout or self.timeout) as response:
                if response.status_code != 200:
                    if response.status_code < 400:
                        raise WahaRequestError(f"WAHA answered {response.status_code} for {path}",
                                               response.status_code, None)
                    self._result(response, raw=True)
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > limit:
                    return None
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > limit:
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ContainerUnreachable(f"WAHA at {self.base_url} did not give {path}: {exc}") from exc

    # --- server ------------------------------------------------------------------

    def version(self) -> dict:
        return self.request("GET", "/api/server/version")

    def health(self) -> dict:
        return self.request("GET", "/health")

    def ping(self) -> bool:
        """True when the server answers its version with this API key."""
        self.request("GET", "/api/server/version", timeout=(2, 5))
        return True

    def key_enforced(self) -> bool:
        """Whether the server refuses a request without its API key (WAHA Core 2024.10 does not)."""
        try:
            response = _http().get(f"{self.base_url}/api/sessions", headers={"Accept": "application/json"},
                                   timeout=self.timeout)
        except requests.RequestException as exc:
            raise ContainerUnreachable(f"WAHA at {self.base_url} is unreachable: {exc}") from exc
        return response.status_code in (401, 403)

    # --- sessions ----------------------------------------------------------------

    def list_sessions(self, all: bool = True) -> list[dict]:  # noqa: A002 - WAHA's own parameter name
        return self.request("GET", "/api/sessions", params={"all": "true" if all else "false"})

    def get_session(self, name: str) -> dict:
        return self.request("GET", f"/api/sessions/{name}")

    def create_session(self, name: str, config: dict | None = None, start: bool = True) -> dict:
        body: dict[str, Any] = {"name": name, "start": start}
        if config:
            body["config"] = config
        return self.request("POST", "/api/sessions", json=body)

    def update_session(self, name: str, config: dict) -> dict:
        return self.request("PUT", f"/api/sessions/{name}", json={"config": config})

    def delete_session(self, name: str) -> None:
        self.request("DELETE", f"/api/sessions/{name}")

    def start_session(self, name: str) -> dict:
        """Start the session; one already started is left as it is (its state is returned)."""
        try:
            return self.request("POST", f"/api/sessions/{name}/start", safe=True)
        except SessionAlreadyStarted:
            return self.get_session(name)

    def stop_session(self, name: str) -> dict:
        return self.request("POST", f"/api/sessions/{name}/stop", safe=True)

    def restart_session(self, name: str) -> dict:
        return self.request("POST", f"/api/sessions/{name}/restart", safe=True)

    def logout_session(self, name: str) -> dict:
        return self.request("POST", f"/api/sessions/{name}/logout")

    def me(self, name: str) -> dict | None:
        return self.request("GET", f"/api/sessions/{name}/me")

    # --- pairing -----------------------------------------------------------------

    def qr(self, name: str, format: str = "image") -> bytes | str:  # noqa: A002 - WAHA's parameter
        """The QR to pair the session: PNG bytes (format="image") or its raw value ("raw")."""
        if format == "raw":
            return self.request("GET", f"/api/{name}/auth/qr", params={"format": "raw"})["value"]
        content = self.request("GET", f"/api/{name}/auth/qr", params={"format": "image"}, raw=True)
        if content[:1] == b"{":
            # Asked for JSON (Accept), WAHA answers {"mimetype", "data": base64}.
            import json

            return base64.b64decode(json.loads(content)["data"])
        return content

    def request_code(self, name: str, phone_number: str, method: str | None = None) -> dict:
        """Ask for a pairing code for a phone number (pairing without the QR); never repeated."""
        body: dict[str, Any] = {"phoneNumber": phone_number}
        if method:
            body["method"] = method
        return self.request("POST", f"/api/{name}/auth/request-code", json=body, safe=False)

    # --- messages ----------------------------------------------------------------

    def send_text(self, session: str, chat_id: str, text: str, reply_to: str | None = None) -> dict:
        body: dict[str, Any] = {"session": session, "chatId": chat_id, "text": text}
        if reply_to:
            body["reply_to"] = reply_to
        return self.request("POST", "/api/sendText", json=body)

    def send_image(self, session: str, chat_id: str, file: dict, caption: str | None = None) -> dict:
        """file: {"mimetype", "filename", "url"} or {"mimetype", "filename", "data": base64}."""
        body: dict[str, Any] = {"session": session, "chatId": chat_id, "file": file}
        if caption:
            body["caption"] = caption
        return self.request("POST", "/api/sendImage", json=body)

    def send_file(self, session: str, chat_id: str, file: dict, caption: str | None = None) -> dict:
        """file: {"mimetype", "filename", "url"} or {"mimetype", "filename", "data": base64}."""
        body: dict[str, Any] = {"session": session, "chatId": chat_id, "file": file}
        if caption:
            body["caption"] = caption
        return self.request("POST", "/api/sendFile", json=body)

    def chat_messages(self, session: str, chat_id: str, *, limit: int = 100, download_media: bool = False
                      ) -> list[dict]:
        """The messages WAHA holds for one chat, newest first (GET /api/{session}/chats/{chatId}/messages):
        WAHA's WAMessages as it returns them, each with at least `id` (the id its events carry),
        `timestamp` (s), `fromMe`, `body` and `ack`; [] for a chat it has no message of.

        2024.10.8 takes `limit` (default 100) and `downloadMedia` only. A bare number gets "@c.us"
        (WAHA's ensureSuffix, which this route does not apply). Raises SessionNotFound (404: not
        started), SessionNotReady (422 after WAHA waited 5 s for WORKING), FeatureUnavailable (400:
        a NOWEB session started without config.noweb.store.enabled), CoreSessionLimit, and the
        transport errors of every call (a read: retried on 502-504 and connection errors)."""
        if "@" not in chat_id:
            chat_id = "".join(c for c in chat_id if c.isdigit()) + "@c.us"
        result = self.request(
            "GET", f"/api/{quote(session, safe='')}/chats/{quote(chat_id, safe='@')}/messages",
            params={"limit": int(limit), "downloadMedia": "true" if download_media else "false"},
        )
        return [m for m in result if isinstance(m, dict)] if isinstance(result, list) else []


def _message(body: Any) -> str:
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or ""
        if isinstance(message, list):
            message = "; ".join(str(m) for m in message)
        return str(message)
    return str(body)[:500] if body else ""


def chat_id_cus(jid: str) -> str:
    """A WhatsApp JID in WAHA's chat id form: 5511...@s.whatsapp.net -> 5511...@c.us."""
    return jid.replace("@s.whatsapp.net", "@c.us") if jid else ""


def message_id(sent: dict) -> str:
    """The id of a sent message as WAHA's events (message.ack) carry it, whatever the engine.

    WEBJS answers {"id": {"_serialized": "true_<chat>_<id>"}}; GOWS and newer engines a
    serialized "id" string; NOWEB answers the engine's raw message {"key": {"id", "remoteJid",
    "fromMe"}}, whose events carry "<fromMe>_<chat in @c.us form>_<id>" (WAHA's buildMessageId).
    """
    if not isinstance(sent, dict):
        return ""
    value = sent.get("id")
    if isinstance(value, dict):
        value = value.get("_serialized") or value.get("id")
    if value:
        return str(value)
    key = sent.get("key")
    if isinstance(key, dict) and key.get("id"):
        from_me = "true" if key.get("fromMe") else "false"
        parts = [from_me, chat_id_cus(str(key.get("remoteJid") or "")), str(key["id"])]
        if key.get("participant"):
            parts.append(chat_id_cus(str(key["participant"])))
        return "_".join(parts)
    return ""


def push_name(message: dict) -> str:
    """The name the sender set in WhatsApp, where each engine puts it in a `message` event:
    WEBJS `_data.notifyName`, NOWEB `_data.pushName`, GOWS `_data.Info.PushName`."""
    data = message.get("_data") if isinstance(message, dict) else None
    if not isinstance(data, dict):
        return ""
    info = data.get("Info") if isinstance(data.get("Info"), dict) else {}
    return str(data.get("notifyName") or data.get("pushName") or info.get("PushName") or "")
