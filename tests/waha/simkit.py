"""Test helpers around the WAHA simulator: run it as a real subprocess, receive its webhooks for real.

Usable from any test package:

    from tests.waha.simkit import SimulatorProcess, WebhookReceiver, free_port

or through the fixtures in tests/waha/conftest.py (`simulator`, `simulator_factory`,
`webhook_receiver`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests import waiting

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float | None = None, interval: float = 0.02,
               message: str = ""):
    """Poll predicate until it returns something truthy; AssertionError on timeout (tests/waiting.py)."""
    return waiting.wait_until(predicate, timeout, interval, message or "condition", error=AssertionError)


class SimulatorProcess:
    """`python -m waha.simulator` on a free loopback port, with an API key and a data dir."""

    def __init__(
        self,
        data_dir: Path | None,
        *,
        engine: str = "plus",
        control: bool = True,
        api_key: str = "sim-test-key",
        extra_args: list[str] | None = None,
        env: dict | None = None,
        port: int | None = None,
        profile: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.profile = profile  # --profile (plus | core-2024.10); None = the simulator's default
        self.control = control
        self.api_key = api_key
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.http = requests.Session()
        if api_key:
            self.http.headers["X-Api-Key"] = api_key

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL for a path."""
        return self.base_url + path

    def command(self) -> list[str]:
        """The argv used to start it."""
        cmd = [sys.executable, "-m", "waha.simulator", "--port", str(self.port), "--engine", self.engine]
        if self.api_key:
            cmd.append(f"--api-key={self.api_key}")  # one argument: a key may begin with "-"
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.control:
            cmd.append("--control")
        if self.profile:
            cmd += ["--profile", self.profile]
        return cmd + self.extra_args

    def start(self, timeout: float = 10.0) -> SimulatorProcess:
        """Start and wait for the 'listening' line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAHA_", "WHATSAPP_"))}
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise AssertionError("simulator did not start:\n" + "\n".join(self.output))
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        code = self.proc.returncode
        self.proc = None
        self.http.close()
        self.http = requests.Session()
        if self.api_key:
            self.http.headers["X-Api-Key"] = self.api_key
        return code

    def restart(self) -> SimulatorProcess:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start()

    # --- small conveniences over self.http ---------------------------------------------

    def get(self, path: str, **kw) -> requests.Response:
        """GET with the API key."""
        return self.http.get(self.url(path), timeout=kw.pop("timeout", 10), **kw)

    def post(self, path: str, json_body=None, **kw) -> requests.Response:
        """POST JSON with the API key."""
        return self.http.post(self.url(path), json=json_body, timeout=kw.pop("timeout", 10), **kw)

    def put(self, path: str, json_body=None, **kw) -> requests.Response:
        """PUT JSON with the API key."""
        return self.http.put(self.url(path), json=json_body, timeout=kw.pop("timeout", 10), **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        """DELETE with the API key."""
        return self.http.delete(self.url(path), timeout=kw.pop("timeout", 10), **kw)

    def status(self, session: str) -> str:
        """Current status of a session."""
        response = self.get(f"/api/sessions/{session}")
        response.raise_for_status()
        return response.json()["status"]

    def wait_status(self, session: str, status: str, timeout: float | None = None) -> None:
        """Poll until the session has this status."""
        wait_until(lambda: self.status(session) == status, timeout, message=f"{session} never became {status}")

    def create_working(self, session: str, phone: str = "5511999990000", push_name: str = "Loja",
                       webhooks: list | None = None) -> dict:
        """Create, start and pair a session through the fake network; returns its info."""
        config = {"webhooks": webhooks} if webhooks else None
        created = self.post("/api/sessions", {"name": session, "config": config, "start": True})
        assert created.status_code == 201, created.text
        self.wait_status(session, "SCAN_QR_CODE")
        scanned = self.post(f"/_sim/sessions/{session}/scan", {"phone": phone, "pushName": push_name})
        assert scanned.status_code == 201, scanned.text
        return scanned.json()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 recording every POST; can answer with scripted statuses."""

    def __init__(self, hmac_key: str | None = None) -> None:
        self.hmac_key = hmac_key
        self.received: list[dict] = []
        self.script: list[int] = []  # statuses to answer first, then 200
        self.responder: Callable[[dict], int | None] | None = None  # per-body status (None = use script)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver.responder(json.loads(raw)) if receiver.responder else None
                    if status is None:
                        status = receiver.script.pop(0) if receiver.script else 200
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "raw": raw,
                            "json": json.loads(raw) if raw else None,
                            "status": status,
                            "at": time.monotonic(),
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Base URL of the receiver."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def hook(self, events: list[str], path: str = "/hook", **extra) -> dict:
        """A WebhookConfig pointing here (signed when the receiver has an hmac key)."""
        config = {"url": self.url + path, "events": events}
        if self.hmac_key:
            config["hmac"] = {"key": self.hmac_key}
        config.update(extra)
        return config

    def valid_signature(self, request: dict, key: str | None = None) -> bool:
        """Whether X-Webhook-Hmac is the hex HMAC-SHA512 of the raw body with the key."""
        key = key or self.hmac_key
        given = request["headers"].get("x-webhook-hmac", "")
        expected = hmac.new(key.encode(), request["raw"], hashlib.sha512).hexdigest()
        return request["headers"].get("x-webhook-hmac-algorithm") == "sha512" and hmac.compare_digest(given, expected)

    def events(self, event: str | None = None, session: str | None = None, accepted_only: bool = True) -> list[dict]:
        """Bodies received (answered 2xx unless accepted_only=False), optionally filtered."""
        with self._lock:
            items = list(self.received)
        out = []
        for item in items:
            body = item["json"] or {}
            if accepted_only and not 200 <= item["status"] < 300:
                continue
            if event and body.get("event") != event:
                continue
            if session and body.get("session") != session:
                continue
            out.append(body)
        return out

    def wait_for(self, predicate: Callable[[dict], bool], count: int = 1, timeout: float | None = None) -> list[dict]:
        """Wait until `count` accepted bodies match predicate; returns them."""

        def matched():
            found = [b for b in self.events() if predicate(b)]
            return found if len(found) >= count else None

        return wait_until(matched, timeout, message=f"webhook not received; got {self.events()}")

    def statuses(self, session: str) -> list[str]:
        """session.status values received for a session, in arrival order."""
        return [b["payload"]["status"] for b in self.events("session.status", session)]

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()
