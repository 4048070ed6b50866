"""Checking a proxy for real: a SOCKS5 (RFC 1928/1929) or HTTP CONNECT handshake, then a request through it.

Failures are classified (wrong credentials, refused, timeout, ...) and described without
ever including the credentials.
"""
import base64
import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .models import Outcome, Scheme

SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the target",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


@dataclass(frozen=True)
class Endpoint:
    """Where a proxy listens and how to log in to it."""

    scheme: str
    host: str
    port: int
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class CheckResult:
    outcome: str
    latency_ms: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


class CheckFailed(Exception):
    """A classified failure; the message never carries credentials."""

    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def redact(text: str, *secrets: str) -> str:
    """Text with every given secret (and URL userinfo) replaced by ***."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def check(endpoint: Endpoint, url: str, timeout: float) -> CheckResult:
    """Handshake with the proxy and fetch `url` through it; never raises."""
    started = time.monotonic()
    try:
        status = _fetch(endpoint, url, timeout)
    except CheckFailed as failure:
        return CheckResult(failure.outcome, None, failure.detail[:300])
    except Exception as exc:  # anything unforeseen is a failure, described without secrets
        detail = redact(f"{type(exc).__name__}: {exc}", endpoint.username, endpoint.password)
        return CheckResult(Outcome.PROXY_ERROR, None, detail[:300])
    latency = int((time.monotonic() - started) * 1000)
    if status >= 400:
        return CheckResult(Outcome.HTTP_ERROR, latency, f"the target answered HTTP {status}")
    return CheckResult(Outcome.OK, latency, f"HTTP {status}")


def _fetch(endpoint: Endpoint, url: str, timeout: float) -> int:
    """The HTTP status of GET `url` through the proxy."""
    target = urlsplit(url)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise ValueError("PROXY_CHECK_URL must be an http(s) URL")
    host = target.hostname
    port = target.port or (443 if target.scheme == "https" else 80)
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    sock = _connect(endpoint, timeout)
    try:
        if endpoint.scheme == Scheme.SOCKS5:
            _socks5_handshake(sock, endpoint, host, port)
        elif target.scheme == "https":
            _http_connect(sock, endpoint, host, port)
        else:
            # A plain-HTTP target through an HTTP proxy: the absolute URL goes to the proxy.
            return _request(sock, url, host, port, via_http_proxy=True, proxy_auth=_basic(endpoint))
        if target.scheme == "https":
            context = ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                raise CheckFailed(Outcome.HTTP_ERROR, f"TLS with the target failed: {type(exc).__name__}")
        return _request(sock, path, host, port)
    finally:
        sock.close()


def _connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        return socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    except ConnectionRefusedError:
        raise CheckFailed(Outcome.REFUSED, f"connection to the proxy {where} refused")
    except TimeoutError:
        raise CheckFailed(Outcome.TIMEOUT, f"no answer from the proxy {where} within {timeout:g} s")
    except OSError as exc:
        raise CheckFailed(Outcome.UNREACHABLE, f"proxy {where} unreachable: {exc.strerror or type(exc).__name__}")


def _recv_exact(sock: socket.socket, size: int, stage: str) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            raise CheckFailed(Outcome.TIMEOUT, f"the proxy stopped answering during {stage}")
        except OSError as exc:
            raise CheckFailed(Outcome.PROXY_ERROR, f"the proxy dropped the connection during {stage}: "
                                                   f"{exc.strerror or type(exc).__name__}")
        if not chunk:
            raise CheckFailed(Outcome.PROXY_ERROR, f"the proxy closed the connection during {stage}")
        data += chunk
    return data


def _socks5_handshake(sock: socket.socket, endpoint: Endpoint, host: str, port: int) -> None:
    """Greeting, optional username/password login, then CONNECT to host:port."""
    with_login = bool(endpoint.username or endpoint.password)
    methods = b"\x00\x02" if with_login else b"\x00"
    sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _recv_exact(sock, 2, "the SOCKS5 greeting")
    if version != 5:
        raise CheckFailed(Outcome.PROTOCOL_ERROR, "the server did not answer as a SOCKS5 proxy")
    if method == 0xFF:
        if with_login:
            raise CheckFailed(Outcome.PROTOCOL_ERROR, "the proxy accepts no authentication method we offer")
        raise CheckFailed(Outcome.AUTH_FAILED, "the proxy requires a username and password")
    if method == 0x02:
        if not with_login:
            raise CheckFailed(Outcome.AUTH_FAILED, "the proxy requires a username and password")
        user, password = endpoint.username.encode(), endpoint.password.encode()
        if len(user) > 255 or len(password) > 255:
            raise CheckFailed(Outcome.AUTH_FAILED, "username or password longer than SOCKS5 allows")
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        _, status = _recv_exact(sock, 2, "the SOCKS5 login")
        if status != 0:
            raise CheckFailed(Outcome.AUTH_FAILED, "the proxy rejected the username or password")
    elif method != 0x00:
        raise CheckFailed(Outcome.PROTOCOL_ERROR, f"the proxy chose an unsupported method {method}")
    sock.sendall(b"\x05\x01\x00" + _socks_address(host) + port.to_bytes(2, "big"))
    version, reply, _, address_type = _recv_exact(sock, 4, "the SOCKS5 CONNECT")
    if version != 5:
        raise CheckFailed(Outcome.PROTOCOL_ERROR, "the server did not answer as a SOCKS5 proxy")
    if reply != 0:
        reason = SOCKS_REPLIES.get(reply, f"reply code {reply}")
        raise CheckFailed(Outcome.PROXY_ERROR, f"the proxy could not reach {host}:{port}: {reason}")
    if address_type == 1:
        _recv_exact(sock, 4 + 2, "the SOCKS5 CONNECT")
    elif address_type == 4:
        _recv_exact(sock, 16 + 2, "the SOCKS5 CONNECT")
    elif address_type == 3:
        (length,) = _recv_exact(sock, 1, "the SOCKS5 CONNECT")
        _recv_exact(sock, length + 2, "the SOCKS5 CONNECT")
    else:
        raise CheckFailed(Outcome.PROTOCOL_ERROR, "the proxy answered an unknown address type")


def _socks_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return b"\x03" + bytes([len(name)]) + name  # the proxy resolves the name (like socks5h)
    return (b"\x01" if address.version == 4 else b"\x04") + address.packed


def _basic(endpoint: Endpoint) -> str | None:
    if not (endpoint.username or endpoint.password):
        return None
    token = base64.b64encode(f"{endpoint.username}:{endpoint.password}".encode()).decode()
    return f"Basic {token}"


def _http_connect(sock: socket.socket, endpoint: Endpoint, host: str, port: int) -> None:
    """Open a tunnel through an HTTP proxy with CONNECT."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if auth := _basic(endpoint):
        lines.append(f"Proxy-Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += _recv_exact(sock, 1, "the HTTP CONNECT")
        if len(head) > 16384:
            raise CheckFailed(Outcome.PROTOCOL_ERROR, "the proxy sent an oversized CONNECT answer")
    status = _status_of(head.split(b"\r\n", 1)[0])
    _raise_for_proxy_status(status, host, port)


def _status_of(status_line: bytes) -> int:
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise CheckFailed(Outcome.PROTOCOL_ERROR, "the server did not answer as an HTTP proxy")
    return int(parts[1])


def _raise_for_proxy_status(status: int, host: str, port: int) -> None:
    if status in (401, 407):  # 407 is the standard; some proxies (tinyproxy) answer 401 to wrong credentials
        raise CheckFailed(Outcome.AUTH_FAILED, f"the proxy rejected the username or password (HTTP {status})")
    if not 200 <= status < 300:
        raise CheckFailed(Outcome.PROXY_ERROR, f"the proxy could not reach {host}:{port} (HTTP {status})")


class _SocketConnection(http.client.HTTPConnection):
    """An HTTP connection over a socket that is already open (tunnelled through the proxy)."""

    def __init__(self, sock: socket.socket, host: str, port: int):
        super().__init__(host, port)
        self.sock = sock

    def connect(self) -> None:  # the socket is already connected
        pass


def _request(sock: socket.socket, target: str, host: str, port: int, via_http_proxy: bool = False,
             proxy_auth: str | None = None) -> int:
    connection = _SocketConnection(sock, host, port)
    headers = {"User-Agent": "whago-proxy-check/1", "Connection": "close"}
    if proxy_auth:
        headers["Proxy-Authorization"] = proxy_auth
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        status = response.status
        response.read(65536)
    except TimeoutError:
        raise CheckFailed(Outcome.TIMEOUT, "the target did not answer through the proxy in time")
    except (http.client.HTTPException, OSError) as exc:
        raise CheckFailed(Outcome.PROXY_ERROR, f"no HTTP answer through the proxy: {type(exc).__name__}")
    if status == 407 or (via_http_proxy and status == 401):
        raise CheckFailed(Outcome.AUTH_FAILED, f"the proxy rejected the username or password (HTTP {status})")
    return status
