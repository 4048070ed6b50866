"""Fixtures for the proxies tests: real microsocks SOCKS5 servers and an HTTP target, on loopback."""
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django_scopes import scopes_disabled

from proxies.models import Proxy, ProxyProvider

MICROSOCKS = shutil.which("microsocks")
TINYPROXY = shutil.which("tinyproxy")
# Credentials chosen so that a leak is unmistakable in logs or HTML.
SOCKS_USER = "whagoproxyuser"
SOCKS_PASSWORD = "Pw-7f3kQ9zLx2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Socks:
    """A running microsocks process."""

    def __init__(self, port: int, user: str | None, password: str | None):
        self.port, self.user, self.password = port, user, password
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Socks":
        args = [MICROSOCKS, "-i", "127.0.0.1", "-p", str(self.port)]
        if self.user:
            args += ["-u", self.user, "-P", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)
        return self

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(timeout=5)
        # Make sure the port is closed before the test goes on.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.02)
            except OSError:
                return


@pytest.fixture
def microsocks():
    """Start real microsocks servers on loopback: microsocks(auth=True) -> Socks. Always killed."""
    if MICROSOCKS is None:
        pytest.fail("microsocks is not installed (scripts/setup.sh all installs it)")
    started: list[Socks] = []

    def start(auth: bool = False, user: str = SOCKS_USER, password: str = SOCKS_PASSWORD) -> Socks:
        socks = Socks(free_port(), user if auth else None, password if auth else None).start()
        started.append(socks)
        return socks

    start.started = started
    yield start
    for socks in started:
        socks.kill()


@pytest.fixture
def tinyproxy(tmp_path):
    """Start a real tinyproxy HTTP proxy on loopback: tinyproxy(auth=True) -> Socks-like handle. Always killed."""
    if TINYPROXY is None:
        pytest.fail("tinyproxy is not installed (scripts/setup.sh all installs tinyproxy-bin)")
    started: list[subprocess.Popen] = []

    def start(auth: bool = False) -> Socks:
        handle = Socks(free_port(), SOCKS_USER if auth else None, SOCKS_PASSWORD if auth else None)
        conf = tmp_path / f"tinyproxy-{handle.port}.conf"
        lines = [f"Port {handle.port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "Timeout 10", "MaxClients 20",
                 "LogLevel Critical"]
        if auth:
            lines.append(f"BasicAuth {SOCKS_USER} {SOCKS_PASSWORD}")
        conf.write_text("\n".join(lines) + "\n")
        handle.proc = subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(handle.proc)
        wait_listening(handle.port)
        return handle

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.hits.append(self.path)
        status = 204 if self.path.startswith("/generate_204") else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_target(settings):
    """A loopback HTTP server answering 204 on /generate_204; PROXY_CHECK_URL points at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/generate_204"
    settings.PROXY_CHECK_URL = server.url
    settings.PROXY_CHECK_TIMEOUT = 3
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def static_list(db):
    """make(socks_servers, name=...) -> a static-list provider with one Proxy per server."""

    def make(servers, name: str = "Lista estática", **extra) -> ProxyProvider:
        with scopes_disabled():
            provider = ProxyProvider.objects.create(name=name, kind=ProxyProvider.Kind.STATIC, country="BR", **extra)
            for socks in servers:
                Proxy.objects.create(provider=provider, host="127.0.0.1", port=socks.port,
                                     username=socks.user or "", password=socks.password or "")
        return provider

    return make


@pytest.fixture
def gateway(db):
    """make(socks, **fields) -> a rotating-gateway provider in front of a microsocks server."""

    def make(socks, name: str = "DataImpulse", **extra) -> ProxyProvider:
        fields = {"name": name, "kind": ProxyProvider.Kind.GATEWAY, "host": "127.0.0.1", "port": socks.port,
                  "username": socks.user or "", "password": socks.password or "", "country": "BR"}
        fields.update(extra)
        return ProxyProvider.objects.create(**fields)

    return make


@pytest.fixture
def signal_log():
    """Records every proxies.signals.assignment_changed sent while the test runs."""
    from proxies.signals import assignment_changed

    received = []

    def receiver(sender, assignment, reason, **kwargs):
        received.append((assignment.session_name, reason, assignment.proxy_id, assignment.provider_id))

    assignment_changed.connect(receiver, weak=False)
    yield received
    assignment_changed.disconnect(receiver)


@pytest.fixture
def make_tenant():
    """A bare tenant, for the transactional tests (no sign-up, plans or e-mail involved)."""
    from whago.models import Tenant

    counter = iter(range(1, 10_000))

    def make(name: str | None = None) -> Tenant:
        n = next(counter)
        return Tenant.objects.create(name=name or f"Empresa {n}", slug=f"empresa-proxies-{n}")

    return make
