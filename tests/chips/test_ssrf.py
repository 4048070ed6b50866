"""The tenant's webhook URL cannot make our worker call into our own networks (issue 17, finding 2).

Each attack points at a real server listening on loopback: without the guard the worker's
POST reaches it. Loopback stands in for "our network" (tests talk to 127.0.0.1 only), so
these tests turn OUTGOING_HTTP_ALLOW_LOOPBACK off, as it is everywhere outside the tests.
"""
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils.translation import gettext
from django_scopes import scope, scopes_disabled

from chips import outgoing
from chips.models import TenantWebhook, WebhookDelivery
from whago import safehttp

# The delivery log is written in the site's language.
REFUSED = gettext("Address not allowed: the URL points to a private or local address.")


class Server:
    """A loopback HTTP server (IPv4 or IPv6) that records POSTs and answers `status`
    (with a Location when `location` is set); `hold` makes it wait until released."""

    def __init__(self, host: str = "127.0.0.1", status: int = 200, location: str = "", hold: bool = False):
        self.requests: list[str] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(self.path)
                server.arrived.set()
                server.release.wait(30)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.httpd = server_class((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """servers(**kwargs) -> a new Server; all closed at teardown."""
    started: list[Server] = []

    def start(**kwargs) -> Server:
        started.append(Server(**kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def production(settings):
    settings.OUTGOING_HTTP_ALLOW_LOOPBACK = False
    return settings


def stored_delivery(tenant, url: str) -> WebhookDelivery:
    """A delivery to a URL that passed the check when it was saved (its name resolved to a public
    address then, or the check was fooled): what matters is what happens when it is sent."""
    with scopes_disabled():
        TenantWebhook.objects.create(tenant=tenant, url=url)
        return WebhookDelivery.objects.create(tenant=tenant, event="ping", url=url, payload={"event": "ping"})


def delivery_row(pk: int) -> WebhookDelivery:
    with scopes_disabled():
        return WebhookDelivery.objects.get(pk=pk)


# --- when the URL is saved ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "https://127.0.0.1:8094\\@8.8.8.8/",  # urlsplit sees 8.8.8.8, requests connects to 127.0.0.1
    "https://localhost/hook",  # a name that resolves to loopback (/etc/hosts)
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://127.1/hook",
    "https://2130706433/hook",
    "https://0.0.0.0/hook",
    "https://10.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://[fd00:ec2::254]/",  # cloud metadata over IPv6
    "https://[::ffff:10.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://224.0.0.1/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
])
def test_private_targets_are_refused_when_saved(owner_client, production, url):
    response = owner_client.post(reverse("webhook_settings"), {"url": url, "is_active": "on"})
    assert response.status_code == 200
    assert response.context["form"].errors["url"]
    with scopes_disabled():
        assert not TenantWebhook.objects.exists()


@pytest.mark.django_db
def test_plain_http_to_a_public_host_is_refused_but_loopback_receivers_work_in_tests(settings):
    with pytest.raises(safehttp.UnsafeURL) as refused:
        safehttp.check_url("http://8.8.8.8/hook")
    assert refused.value.code == "scheme"
    assert safehttp.check_url("https://8.8.8.8/hook") == "8.8.8.8"
    settings.OUTGOING_HTTP_ALLOW_LOOPBACK = True
    assert safehttp.check_url("http://127.0.0.1:9/hook") == "127.0.0.1"
    with pytest.raises(safehttp.UnsafeURL):
        safehttp.check_url("http://10.0.0.1/hook")  # private stays refused even then


# --- when it is sent --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("template, host", [
    ("http://127.0.0.1:{port}\\@8.8.8.8/", "127.0.0.1"),
    ("http://localhost:{port}/hook", "127.0.0.1"),  # DNS: the check runs on what the name resolves to now
    ("http://127.1:{port}/hook", "127.0.0.1"),
    ("http://[::ffff:127.0.0.1]:{port}/hook", "127.0.0.1"),
    ("http://[::1]:{port}/hook", "::1"),
])
def test_refused_at_send_time_and_nothing_reaches_the_address(make_owner, production, servers, template, host):
    _, tenant = make_owner()
    target = servers(host=host)
    delivery = stored_delivery(tenant, template.format(port=target.port))

    with scope(tenant=tenant):  # the delivery task's scope
        wait = outgoing.attempt_delivery(delivery.pk)

    assert target.requests == []
    delivery = delivery_row(delivery.pk)
    assert delivery.last_error == REFUSED and delivery.response_status is None
    assert delivery.status == WebhookDelivery.Status.PENDING and wait > 0  # retried later, refused again


@pytest.mark.django_db
def test_the_delivery_log_is_no_port_scanner(make_owner, production, servers):
    """An open port, a closed one and a name: the log reads the same for every refused address."""
    open_port = servers().port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    errors = set()
    for url in (f"http://127.0.0.1:{open_port}/", f"http://127.0.0.1:{closed_port}/",
                f"https://localhost:{open_port}/", f"http://[::1]:{closed_port}/"):
        _, tenant = make_owner()
        delivery = stored_delivery(tenant, url)
        with scope(tenant=tenant):  # the delivery task's scope
            outgoing.attempt_delivery(delivery.pk)
        errors.add(delivery_row(delivery.pk).last_error)
    assert errors == {REFUSED}


@pytest.mark.django_db
def test_redirects_are_not_followed(make_owner, servers):
    """Loopback is allowed here (it stands for a tenant's public endpoint): the endpoint redirects
    to another address, which must never be called."""
    inner = servers()
    outer = servers(status=307, location=f"http://localhost:{inner.port}/internal")
    _, tenant = make_owner()
    delivery = stored_delivery(tenant, f"http://127.0.0.1:{outer.port}/hook")

    with scope(tenant=tenant):  # the delivery task's scope
        outgoing.attempt_delivery(delivery.pk)

    assert outer.requests == ["/hook"] and inner.requests == []
    delivery = delivery_row(delivery.pk)
    assert delivery.response_status == 307 and "307" in delivery.last_error
    assert delivery.status == WebhookDelivery.Status.PENDING


@pytest.mark.django_db
def test_a_redirect_to_the_metadata_address_is_returned_not_followed(servers):
    outer = servers(status=302, location="http://169.254.169.254/latest/meta-data/")
    response = safehttp.post(f"http://127.0.0.1:{outer.port}/", data=b"{}", headers={}, timeout=5)
    assert response.status_code == 302 and outer.requests == ["/"]


def test_no_transaction_or_row_lock_is_held_during_the_call(celery_worker, make_owner, servers):
    """The worker's POST is held open by the endpoint: meanwhile the delivery row can be locked
    by anyone (before, the POST ran inside select_for_update for up to its timeout)."""
    slow = servers(hold=True)
    _, tenant = make_owner()
    outgoing.set_webhook(tenant, f"http://127.0.0.1:{slow.port}/hook")
    delivery = outgoing.emit(tenant.pk, "ping", {"n": 1})

    assert slow.arrived.wait(20), "the worker never called the endpoint"
    with scopes_disabled(), transaction.atomic():
        try:
            locked = WebhookDelivery.objects.select_for_update(nowait=True).get(pk=delivery.pk)
        except DatabaseError:
            pytest.fail("the delivery row is locked while the endpoint is being called")
    assert locked.attempts == 1 and locked.status == WebhookDelivery.Status.PENDING  # claimed, committed
    slow.release.set()

    deadline = time.monotonic() + 20
    while delivery_row(delivery.pk).status != WebhookDelivery.Status.DELIVERED:
        assert time.monotonic() < deadline, delivery_row(delivery.pk).last_error
        time.sleep(0.1)
    assert slow.requests == ["/hook"] and delivery_row(delivery.pk).attempts == 1


@pytest.mark.django_db
def test_a_claimed_delivery_is_not_sent_twice(make_owner, servers):
    """A second copy of the task arriving while an attempt is in flight (or before the retry is
    due) does not call again: it comes back when the claim runs out."""
    target = servers()
    _, tenant = make_owner()
    delivery = stored_delivery(tenant, f"http://127.0.0.1:{target.port}/")
    with scope(tenant=tenant):  # the delivery task's scope
        claimed = outgoing._claim(delivery.pk)
    assert isinstance(claimed, tuple)

    with scope(tenant=tenant):  # the delivery task's scope
        wait = outgoing.attempt_delivery(delivery.pk)

    assert wait > 30 and target.requests == []
    assert delivery_row(delivery.pk).attempts == 1
