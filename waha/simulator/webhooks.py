"""Webhook delivery on background threads.

Like WAHA Plus: signed (HMAC SHA-512 of the raw body), custom headers, retried. Like WAHA Core
2024.10 (a `plain` hook, src/core/webhooks.core.ts): one axios POST, no signature, no custom
header, no retry, whatever hmac/retries/customHeaders the config has.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .jobs import Scheduler

# WAHA's WAHAEvents, in its order (validation messages list them so).
EVENTS = (
    "session.status",
    "message",
    "message.reaction",
    "message.any",
    "message.ack",
    "message.waiting",
    "message.revoked",
    "state.change",
    "group.join",
    "group.leave",
    "presence.update",
    "poll.vote",
    "poll.vote.failed",
    "chat.archive",
    "call.received",
    "call.accepted",
    "call.rejected",
    "label.upsert",
    "label.deleted",
    "label.chat.added",
    "label.chat.deleted",
)
ALL_EVENTS = frozenset(EVENTS)
DEFAULT_ATTEMPTS = 15
DEFAULT_DELAY_SECONDS = 2.0
DEFAULT_POLICY = "linear"
MAX_WAIT_SECONDS = 60.0
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_event_id() -> str:
    """A WAHA-style event id: 'evt_' + a lowercase ULID (time-ordered, unique)."""
    ms = int(time.time() * 1000)
    head = "".join(CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
    rand = int.from_bytes(os.urandom(10), "big")
    tail = "".join(CROCKFORD[(rand >> shift) & 31] for shift in range(75, -1, -5))
    return f"evt_{head}{tail}"


def sign(body: bytes, key: str) -> str:
    """Hex HMAC-SHA512 of the raw body, as in WAHA's X-Webhook-Hmac header."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest()


def dumps(data) -> bytes:
    """Compact JSON bytes like JSON.stringify."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Hook:
    """One configured webhook target."""

    url: str
    events: frozenset
    hmac_key: str | None = None
    attempts: int = DEFAULT_ATTEMPTS
    delay: float = DEFAULT_DELAY_SECONDS
    policy: str = DEFAULT_POLICY
    headers: list[tuple[str, str]] = field(default_factory=list)
    plain: bool = False  # WAHA Core 2024.10: unsigned, no custom headers, never retried

    @classmethod
    def from_config(cls, cfg: dict, plain: bool = False) -> Hook | None:
        """Build from a WebhookConfig dict (already validated); None when it subscribes to nothing."""
        if not cfg or not cfg.get("url") or not cfg.get("events"):
            return None
        events = list(cfg["events"])
        wanted = ALL_EVENTS if "*" in events else frozenset(e for e in events if e in ALL_EVENTS)
        if plain:
            return cls(url=cfg["url"], events=frozenset(wanted), attempts=0, plain=True)
        retries = cfg.get("retries") or {}
        hmac_cfg = cfg.get("hmac") or {}
        headers = [(h["name"], h["value"]) for h in (cfg.get("customHeaders") or [])]
        return cls(
            url=cfg["url"],
            events=frozenset(wanted),
            hmac_key=hmac_cfg.get("key") or None,
            attempts=max(int(retries["attempts"]), 0) if retries.get("attempts") is not None else DEFAULT_ATTEMPTS,
            delay=float(retries["delaySeconds"]) if retries.get("delaySeconds") is not None else DEFAULT_DELAY_SECONDS,
            policy=retries.get("policy") or DEFAULT_POLICY,
            headers=headers,
        )

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry number n (1-based)."""
        if self.policy == "constant":
            wait = self.delay
        elif self.policy == "exponential":
            wait = self.delay * (2 ** (retry_number - 1))
        else:
            wait = self.delay * retry_number
        return min(max(wait, 0.0), MAX_WAIT_SECONDS)


class _Connections(threading.local):
    """Per-thread keep-alive connections, one per (scheme, host, port)."""

    def __init__(self) -> None:
        self.pool: dict[tuple[str, str, int], http.client.HTTPConnection] = {}


@dataclass
class Delivery:
    """One event on its way to one hook."""

    hook: Hook
    body: bytes
    event_id: str
    event: str
    session: str
    timestamp: int
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    last_status: str = ""
    delivered: bool = False


class WebhookSender:
    """Queues deliveries, posts them from a thread pool, retries with backoff."""

    def __init__(self, workers: int, timeout: float, max_pending: int, user_agent: str) -> None:
        self.user_agent = user_agent
        self.scheduler = Scheduler(workers, "sim-hooks")
        self.timeout = timeout
        self.max_pending = max_pending
        self._conns = _Connections()
        self._lock = threading.Lock()
        self.stats = {"delivered": 0, "failed_attempts": 0, "retries": 0, "given_up": 0, "dropped": 0, "pending": 0}
        self.recent: deque[Delivery] = deque(maxlen=1000)
        self._lanes: dict[tuple[str, str], deque[Delivery]] = {}  # ordered events: one at a time per lane

    def _count(self, key: str, delta: int = 1) -> None:
        with self._lock:
            self.stats[key] += delta

    def send(self, hook: Hook, body: bytes, event_id: str, event: str, session: str, timestamp: int,
             ordered: bool = False) -> None:
        """Queue one delivery (never blocks the caller).

        Ordered deliveries (session.status) of one session to one URL go out one after the other,
        each after the previous one was accepted or given up; the others are posted concurrently.
        """
        delivery = Delivery(hook, body, event_id, event, session, timestamp)
        lane = (session, hook.url) if ordered else None
        with self._lock:
            if self.stats["pending"] >= self.max_pending:
                self.stats["dropped"] += 1
                return
            self.stats["pending"] += 1
            if lane is not None:
                queue = self._lanes.get(lane)
                if queue is not None:
                    queue.append(delivery)  # the lane's current delivery will start it
                    self.recent.append(delivery)
                    return
                self._lanes[lane] = deque([delivery])
        self.recent.append(delivery)
        self.scheduler.submit(lambda: self._attempt(delivery, lane))

    def snapshot(self) -> dict:
        """Counters for /_sim/stats."""
        with self._lock:
            return dict(self.stats)

    def reset(self) -> None:
        """Zero the counters (pending stays as it is)."""
        with self._lock:
            for key in self.stats:
                if key != "pending":
                    self.stats[key] = 0
        self.recent.clear()

    def flush(self, timeout: float) -> None:
        """Wait (at most timeout seconds) until nothing is pending."""
        deadline = time.monotonic() + timeout
        while self.snapshot()["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop delivering."""
        self.scheduler.stop()

    def _attempt(self, d: Delivery, lane: tuple[str, str] | None = None) -> None:
        d.attempts += 1
        ok, status = self._post(d)
        d.last_status = status
        if ok:
            d.delivered = True
            self._finish(lane, "delivered")
            return
        self._count("failed_attempts")
        retry_number = d.attempts  # retries done so far + 1
        if retry_number > d.hook.attempts:
            print(
                f"simulator: webhook {d.event} {d.event_id} to {d.hook.url} given up after {d.attempts} attempts "
                f"({status})",
                file=sys.stderr,
                flush=True,
            )
            self._finish(lane, "given_up")
            return
        self._count("retries")
        self.scheduler.call_later(d.hook.wait_before(retry_number), lambda: self._attempt(d, lane))

    def _finish(self, lane: tuple[str, str] | None, outcome: str) -> None:
        """One delivery is over: count it, release its pending slot, start the next one of its lane."""
        following = None
        with self._lock:
            self.stats[outcome] += 1
            self.stats["pending"] -= 1
            if lane is not None:
                queue = self._lanes[lane]
                queue.popleft()
                if queue:
                    following = queue[0]
                else:
                    del self._lanes[lane]
        if following is not None:
            self.scheduler.submit(lambda: self._attempt(following, lane))

    def _post(self, d: Delivery) -> tuple[bool, str]:
        parts = urlsplit(d.hook.url)
        scheme = parts.scheme or "http"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if d.hook.plain:  # what axios sends for WAHA Core 2024.10
            headers = {
                "Accept": "application/json, text/plain, */*",
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                "Content-Length": str(len(d.body)),
                "Accept-Encoding": "gzip, compress, deflate, br",
                "Host": parts.netloc,
                "Connection": "keep-alive",
            }
        else:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                "X-Webhook-Request-Id": d.request_id,
                "X-Webhook-Timestamp": str(d.timestamp),
                "Content-Length": str(len(d.body)),
            }
            for name, value in d.hook.headers:
                headers[name] = value
            if d.hook.hmac_key:
                headers["X-Webhook-Hmac"] = sign(d.body, d.hook.hmac_key)
                headers["X-Webhook-Hmac-Algorithm"] = "sha512"
        key = (scheme, host, port)
        for fresh in (False, True):
            conn = self._conns.pool.get(key)
            if conn is None or fresh:
                if conn is not None:
                    conn.close()
                cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
                conn = cls(host, port, timeout=self.timeout)
                self._conns.pool[key] = conn
            try:
                conn.request("POST", path, body=d.body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    conn.close()
                    self._conns.pool.pop(key, None)
                return 200 <= resp.status < 300, str(resp.status)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                self._conns.pool.pop(key, None)
                if fresh:
                    return False, type(exc).__name__
                continue  # a kept-alive connection went stale: retry once on a new one
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conns.pool.pop(key, None)
                return False, type(exc).__name__
        return False, "unreachable"
