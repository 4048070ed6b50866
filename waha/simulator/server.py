"""HTTP/1.1 keep-alive threaded server exposing the WAHA routes and, with --control, /_sim/."""
from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import WAHA_VERSION
from .core import AnswerLost, SimError, Simulator, bad_request

MAX_BODY = 64 * 1024 * 1024
SEG = r"([^/]+)"
FILES = object()  # route marker: GET /api/files/<key> answers the file itself


def _json(data) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _int_param(query: dict, name: str, default: int, maximum: int) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer")
    if value < 0:
        raise bad_request(f"{name} must not be negative")
    return min(value, maximum)


class Router:
    """Maps (method, path) to handlers; control routes only exist with --control."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        s = sim
        routes = [
            ("GET", r"/ping", lambda m, q, b: {"message": "pong"}),
            ("GET", r"/health", lambda m, q, b: s.health()),
            ("GET", r"/api/server/version", lambda m, q, b: s.environment),
            ("GET", r"/api/version", lambda m, q, b: s.environment),
            ("GET", r"/api/server/environment",
             lambda m, q, b: s.environment_vars(q.get("all", ["false"])[0] == "true")),
            ("GET", r"/api/server/status", lambda m, q, b: s.server_status()),
            ("GET", r"/api/sessions/?", lambda m, q, b: s.list_sessions(q.get("all", ["false"])[0] == "true")),
            ("POST", r"/api/sessions/?", lambda m, q, b: s.create(b())),
            ("GET", rf"/api/sessions/{SEG}/me", lambda m, q, b: s.me(m[0])),
            ("POST", rf"/api/sessions/{SEG}/start", lambda m, q, b: s.start(m[0])),
            ("POST", rf"/api/sessions/{SEG}/stop", lambda m, q, b: s.stop(m[0])),
            ("POST", rf"/api/sessions/{SEG}/restart", lambda m, q, b: s.restart(m[0])),
            ("POST", rf"/api/sessions/{SEG}/logout", lambda m, q, b: s.logout(m[0])),
            ("GET", rf"/api/sessions/{SEG}", lambda m, q, b: s.get_info(m[0])),
            ("PUT", rf"/api/sessions/{SEG}", lambda m, q, b: s.update(m[0], b())),
            ("DELETE", rf"/api/sessions/{SEG}", lambda m, q, b: s.delete(m[0])),
            ("GET", rf"/api/{SEG}/auth/qr", None),  # handled in the request handler (binary)
            ("GET", r"/api/files/(.+)", FILES),  # received media (binary), behind the key like the API
            ("POST", rf"/api/{SEG}/auth/request-code", lambda m, q, b: s.request_code(m[0], b())),
            ("GET", rf"/api/{SEG}/chats/{SEG}/messages", lambda m, q, b: s.chat_messages(m[0], m[1], q)),
            ("POST", r"/api/sendText", lambda m, q, b: s.send("text", b())),
            ("POST", r"/api/sendImage", lambda m, q, b: s.send("image", b())),
            ("POST", r"/api/sendFile", lambda m, q, b: s.send("file", b())),
        ]
        control = [
            ("POST", rf"/_sim/sessions/{SEG}/scan", lambda m, q, b: s.scan(m[0], b())),
            ("POST", rf"/_sim/sessions/{SEG}/inbound", lambda m, q, b: s.inbound(m[0], b())),
            ("POST", rf"/_sim/sessions/{SEG}/fail", lambda m, q, b: s.fail(m[0], b())),
            ("GET", rf"/_sim/sessions/{SEG}/behaviour", lambda m, q, b: s.get_behaviour(m[0])),
            ("PUT", rf"/_sim/sessions/{SEG}/behaviour", lambda m, q, b: s.set_behaviour(b(), m[0])),
            ("DELETE", rf"/_sim/sessions/{SEG}/behaviour", lambda m, q, b: s.clear_behaviour(m[0])),
            ("GET", rf"/_sim/sessions/{SEG}/messages", lambda m, q, b: s.messages(
                m[0], _int_param(q, "offset", 0, 10**9), _int_param(q, "limit", 1000, 100_000))),
            ("GET", r"/_sim/behaviour", lambda m, q, b: s.get_behaviour()),
            ("PUT", r"/_sim/behaviour", lambda m, q, b: s.set_behaviour(b())),
            ("GET", r"/_sim/stats", lambda m, q, b: s.stats()),
            ("GET", r"/_sim/webhooks", lambda m, q, b: s.webhook_log(_int_param(q, "limit", 100, 1000))),
            ("POST", r"/_sim/reset", lambda m, q, b: s.reset()),
        ]
        if sim.cfg.control:
            routes += control
        self.routes = [(method, re.compile(pattern + r"\Z"), fn) for method, pattern, fn in routes]

    def match(self, method: str, path: str):
        """(handler, groups) or raise the NestJS 404."""
        for route_method, pattern, fn in self.routes:
            if route_method != method:
                continue
            found = pattern.match(path)
            if found:
                return fn, [unquote(g) for g in found.groups()]
        raise SimError(404, f"Cannot {method} {path}")


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = f"WAHA-Simulator/{WAHA_VERSION}"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    wbufsize = 64 * 1024  # one write per response (flushed by handle_one_request)

    def setup(self) -> None:  # noqa: D102 - no Nagle delay on small responses
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args) -> None:  # noqa: D102 - quiet unless WAHA_LOG_LEVEL=debug
        if self.server.sim.cfg.debug:
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def do_GET(self) -> None:  # noqa: N802, D102
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802, D102
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802, D102
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802, D102
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += size
                if total > MAX_BODY:
                    raise SimError(413, {"message": "request entity too large", "statusCode": 413})
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        if not length:
            return b""
        n = int(length)
        if n > MAX_BODY:
            raise SimError(413, {"message": "request entity too large", "statusCode": 413})
        return self.rfile.read(n)

    def _authorized(self, path: str, query: dict) -> bool:
        key = self.server.sim.cfg.api_key
        sim = self.server.sim
        if not key or not sim.profile.key_enforced or path == "/ping" or path.strip("/") in sim.cfg.excluded_paths:
            return True
        given = self.headers.get("X-Api-Key") or query.get("x-api-key", [""])[0]
        return bool(given) and hmac.compare_digest(given.encode(), key.encode())

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        try:
            raw = self._read_body()
        except SimError as exc:
            self.close_connection = True
            self._send(exc.status, _json(exc.body))
            return
        except (ValueError, OSError):
            self.close_connection = True
            self._send(400, _json({"message": "bad request body", "statusCode": 400}))
            return
        try:
            if not self._authorized(path, query):
                raise SimError(401, {"message": "Unauthorized", "statusCode": 401})
            fn, groups = self.server.router.match(method, path)

            def body():
                if not raw.strip():
                    return {}
                try:
                    return json.loads(raw)
                except ValueError as exc:  # body-parser: one message, not a list
                    detail = f"{exc.msg} in JSON at position {exc.pos}" if hasattr(exc, "pos") else str(exc)
                    raise SimError(400, detail) from None

            if fn is None:  # the QR route
                self._qr(groups[0], query)
                return
            if fn is FILES:
                data, mimetype = self.server.sim.file(groups[0])
                self._send(200, data, content_type=mimetype)
                return
            result = fn(groups, query, body)
            # NestJS answers POST with 201 unless told otherwise, and a handler's null/undefined
            # with an empty body (no Content-Type).
            status = 201 if method == "POST" else 200
            if result is None:
                self._send(status, b"", content_type=None)
            else:
                self._send(status, _json(result))
        except SimError as exc:
            self._send(exc.status, _json(exc.body))
        except AnswerLost:  # done, but the caller never hears it: the connection closes unanswered
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except Exception as exc:  # WAHA's AllExceptionsFilter shape
            print(f"simulator: {method} {path} failed: {exc!r}", file=sys.stderr, flush=True)
            self._send(
                500,
                _json({"statusCode": 500, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                       "exception": {"message": str(exc), "name": type(exc).__name__},
                       "request": {"path": self.path, "method": method}}),
            )
        finally:
            if self.server.sim.cfg.debug:
                sys.stderr.write(f"{method} {self.path} {(time.monotonic() - started) * 1000:.1f} ms\n")

    def _qr(self, name: str, query: dict) -> None:
        fmt = query.get("format", ["image"])[0]
        sim = self.server.sim
        if fmt == "raw":
            value, _, _ = sim.qr(name)
            self._send(200, _json({"value": value}))
            return
        if fmt != "image":
            raise bad_request("format must be one of the following values: image, raw")
        data = sim.qr_png(name)
        if self.headers.get("Accept") == "application/json":
            self._send(200, _json({"mimetype": "image/png", "data": base64.b64encode(data).decode()}))
        else:
            self._send(200, data, content_type="image/png")

    def _send(self, status: int, payload: bytes, content_type: str | None = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)


class SimServer(ThreadingHTTPServer):
    """Threaded server that knows its simulator."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, sim: Simulator) -> None:
        host = sim.cfg.host
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sim = sim
        self.router = Router(sim)
        super().__init__((host, sim.cfg.port), Handler)

    def server_bind(self) -> None:  # noqa: D102 - skip the slow reverse DNS of HTTPServer.server_bind
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]
