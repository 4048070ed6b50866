"""Files contacts send: WAHA names them in the `message` webhook (media.url on its own /api/files/), the
chip's server is asked for them with its key, they are stored in the message's file field and shown in the
thread; never fetched from another host, never over the size limit, once per message, to its tenant only.
A server that cannot give the file (media url null) is said so in the thread.

The WAHA side is the simulator (plus profile) as a real process on loopback; the webhook is posted signed
as the container would; the download runs as the Celery task (eagerly, in the test's transaction)."""
import base64
import itertools
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from chips import inbound_media
from chips.models import Message
from tests.waha.conftest import simulator_factory  # noqa: F401 - fixture
from waha.models import WebhookEvent

from .conftest import placed_chip, png_bytes, post_event

pytestmark = pytest.mark.django_db

ANA = "5511988880001"
_events = itertools.count(1)


@pytest.fixture
def eager(django_capture_on_commit_callbacks):
    """Celery tasks run in the test (after the webhook's transaction commits)."""
    from whago.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield django_capture_on_commit_callbacks
    app.conf.task_always_eager = before


@pytest.fixture
def waha(simulator_factory, owner_client):  # noqa: F811
    """A chip of the owner's company whose container is a plus simulator with a WORKING session."""
    sim = simulator_factory(profile="plus", env={"WHATSAPP_API_HOSTNAME": "127.0.0.1"})
    chip = placed_chip(owner_client.tenant, phone="+5511999990001")
    container = chip.waha_session.container
    with scopes_disabled():
        container.url = sim.base_url
        container.api_key = sim.api_key
        container.save(update_fields=["url", "api_key"])
    sim.create_working(chip.session_name, phone="5511999990001")
    return sim, chip, owner_client


def contact_sends(sim, chip, data: bytes | None = None, mimetype="image/png", filename="foto.png", **extra) -> dict:
    """The contact sends a file through the simulator; returns the WAMessage WAHA posts."""
    body = {"from": ANA, "body": "olha a foto", "pushName": "Ana", **extra}
    if data is not None:
        body["media"] = {"mimetype": mimetype, "filename": filename, "data": base64.b64encode(data).decode()}
    response = sim.post(f"/_sim/sessions/{chip.session_name}/inbound", body)
    assert response.status_code == 201, response.text
    return response.json()


def deliver(chip, payload: dict, eager_callbacks) -> None:
    """WAHA's signed `message` webhook reaches the app; the tasks it queued run."""
    with eager_callbacks(execute=True):
        response = post_event(Client(), chip, "message", payload, f"evt_media_{next(_events)}")
    assert response.status_code == 200, response.content


def received(chip) -> list[Message]:
    with scopes_disabled():
        return list(Message.objects.filter(chip=chip, direction=Message.Direction.IN).order_by("pk"))


def served(sim) -> int:
    return sim.get("/_sim/stats").json()["files"]["served"]


def test_a_photo_a_contact_sends_is_stored_and_shown_inline(waha, eager):
    sim, chip, client = waha
    photo = png_bytes("blue")
    payload = contact_sends(sim, chip, photo)
    assert payload["hasMedia"] is True and payload["media"]["url"].startswith(f"{sim.base_url}/api/files/")
    deliver(chip, payload, eager)

    [message] = received(chip)
    assert message.kind == Message.Kind.IMAGE and message.error == ""
    assert message.media and message.media.read() == photo
    assert (message.media_name, message.media_mimetype) == ("foto.png", "image/png")
    assert served(sim) == 1

    page = client.get(reverse("conversation", args=[chip.pk, f"+{ANA}"])).content.decode()
    media_url = reverse("message_media", args=[message.pk])
    assert f'<img src="{media_url}"' in page and "olha a foto" in page
    answer = client.get(media_url)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
    assert b"".join(answer.streaming_content) == photo
    assert "attachment" not in answer.get("Content-Disposition", "")


def test_a_repeated_webhook_downloads_once(waha, eager):
    sim, chip, _client = waha
    payload = contact_sends(sim, chip, png_bytes())
    deliver(chip, payload, eager)
    deliver(chip, payload, eager)  # WAHA retried, or the event came twice
    assert len(received(chip)) == 1 and received(chip)[0].media
    assert served(sim) == 1
    # A task run again (a worker died after storing) keeps the file it has and asks nothing.
    with scope(tenant=chip.tenant_id):  # the fetch task's scope
        assert inbound_media.download(received(chip)[0].pk, payload["media"]["url"]) == "kept"
    assert served(sim) == 1


class Flaky(ThreadingHTTPServer):
    """The chip's WAHA server failing (503) a given number of times before it answers the file."""

    def __init__(self, failures: int, body: bytes):
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits += 1
                failing = outer.hits <= failures
                self.send_response(503 if failing else 200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "0" if failing else str(len(body)))
                self.end_headers()
                if not failing:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def elsewhere():
    """Another server on loopback (another port: another origin) that counts what it is asked."""
    server = Flaky(0, b"evil")
    yield server
    server.shutdown()
    server.server_close()


def test_a_media_url_on_another_host_is_refused_and_nothing_is_fetched(waha, eager, elsewhere):
    sim, chip, client = waha
    payload = contact_sends(sim, chip, png_bytes())
    own = payload["media"]["url"]
    path = own[len(sim.base_url):]
    port = elsewhere.server_address[1]
    payload["media"]["url"] = f"http://127.0.0.1:{port}{path}"
    deliver(chip, payload, eager)

    [message] = received(chip)
    assert not message.media and message.error == inbound_media.REFUSED
    assert elsewhere.hits == 0 and served(sim) == 0
    page = client.get(reverse("conversation", args=[chip.pk, f"+{ANA}"])).content.decode()
    assert "Arquivo não buscado: o endereço não é o servidor WAHA do chip" in page
    # Other ways to point elsewhere from the server's own address are refused as well.
    for url in (f"http://127.0.0.1:{sim.port}@127.0.0.1:{port}{path}", f"https://127.0.0.1:{sim.port}{path}",
                f"{sim.base_url}/api/sessions", f"{sim.base_url}/api/files/../sessions", "file:///etc/passwd"):
        assert inbound_media.allowed(url, sim.base_url) is False, url
    assert inbound_media.allowed(own, sim.base_url) is True
    assert elsewhere.hits == 0


def test_a_file_over_the_limit_is_not_kept(waha, eager, settings):
    sim, chip, client = waha
    settings.CHIPS_INBOUND_MEDIA_MAX_MB = 0.01  # about 10 KB
    deliver(chip, contact_sends(sim, chip, b"%PDF-1.4\n" + b"0" * 20_000, "application/pdf", "contrato.pdf"), eager)
    [message] = received(chip)
    assert not message.media and message.error == inbound_media.TOO_LARGE
    assert message.kind == Message.Kind.DOCUMENT
    page = client.get(reverse("conversation", args=[chip.pk, f"+{ANA}"])).content.decode()
    assert "Arquivo maior que o tamanho guardado; não armazenado" in page and "contrato.pdf" in page


def test_a_server_that_cannot_give_the_file_is_said_so(waha, eager):
    """WAHA without the file (media url null: download off, type skipped, or the download failed)."""
    sim, chip, client = waha
    payload = contact_sends(sim, chip, hasMedia=True)
    assert payload["hasMedia"] is True and payload["media"]["url"] is None
    deliver(chip, payload, eager)
    [message] = received(chip)
    assert not message.media and message.error == inbound_media.UNAVAILABLE and served(sim) == 0
    page = client.get(reverse("conversation", args=[chip.pk, f"+{ANA}"])).content.decode()
    assert "Arquivo não disponível neste servidor WAHA" in page
    # The message's own page says it in words too, never the stored code.
    detail = client.get(reverse("message_detail", args=[message.pk])).content.decode()
    assert "Arquivo não disponível neste servidor WAHA" in detail and inbound_media.UNAVAILABLE not in detail


def test_another_tenant_cannot_open_the_file(waha, eager, make_owner, client_factory):
    sim, chip, client = waha
    deliver(chip, contact_sends(sim, chip, png_bytes()), eager)
    [message] = received(chip)
    assert client.get(reverse("message_media", args=[message.pk])).status_code == 200
    user, _tenant = make_owner()
    other = client_factory()
    other.force_login(user)
    assert other.get(reverse("message_media", args=[message.pk])).status_code == 404



@pytest.mark.parametrize("failures, outcome", [(3, "stored"), (6, inbound_media.UNAVAILABLE)])
def test_a_failing_server_is_tried_again_then_the_file_is_said_unavailable(waha, eager, failures, outcome):
    """Transport errors and 5xx are retried (5 times, with backoff); then the thread says unavailable."""
    sim, chip, _client = waha
    photo = png_bytes("green")
    payload = contact_sends(sim, chip, photo)
    flaky = Flaky(failures, photo)
    try:
        container = chip.waha_session.container
        with scopes_disabled():
            container.url = f"http://127.0.0.1:{flaky.server_address[1]}"
            container.save(update_fields=["url"])
        payload["media"]["url"] = container.url + payload["media"]["url"][len(sim.base_url):]
        deliver(chip, payload, eager)
    finally:
        flaky.shutdown()
        flaky.server_close()
    [message] = received(chip)
    assert flaky.hits == min(failures + 1, 6)
    if outcome == "stored":
        assert message.media.read() == photo and message.error == ""
    else:
        assert not message.media and message.error == outcome


def test_a_fetch_lost_with_its_task_is_queued_again_by_the_sweep(waha, eager, settings):
    """The fetch is queued when the webhook commits; with the broker down that task is lost (here: the
    on-commit callbacks never run). Beat's sweep finds the file still missing and queues it again, with
    the URL of the stored webhook; only once, and not before CHIPS_INBOUND_MEDIA_LOST_SECONDS."""
    sim, chip, _client = waha
    photo = png_bytes("red")
    payload = contact_sends(sim, chip, photo)
    contact_sends(sim, chip, hasMedia=True)  # no url: said unavailable at once, nothing to queue
    with eager(execute=False):  # the webhook is stored and the message recorded; the fetch task is lost
        response = post_event(Client(), chip, "message", payload, f"evt_media_{next(_events)}")
    assert response.status_code == 200
    [message] = received(chip)
    assert not message.media and message.error == "" and served(sim) == 0

    settings.CHIPS_INBOUND_MEDIA_LOST_SECONDS = 60
    assert inbound_media.requeue_lost_media() == 0  # too early: its task may still be at work
    with scopes_disabled():
        WebhookEvent.objects.filter(event="message").update(received_at=timezone.now() - timedelta(seconds=90))
    assert inbound_media.lost_fetches() == [(message.pk, payload["media"]["url"], chip.tenant_id)]

    assert inbound_media.requeue_lost_media() == 1
    message.refresh_from_db()
    assert message.media.read() == photo and message.error == "" and served(sim) == 1
    assert inbound_media.lost_fetches() == [] and inbound_media.requeue_lost_media() == 0


def test_a_lost_fetch_is_queued_again_once_per_retry_span(waha, eager, settings):
    """A fetch the sweep queued that is still retrying (the server does not answer) is not queued again
    every minute; when the server's file is gone the fetch settles it as unavailable."""
    sim, chip, _client = waha
    payload = contact_sends(sim, chip, png_bytes("gray"))
    with eager(execute=False):
        post_event(Client(), chip, "message", payload, f"evt_media_{next(_events)}")
    settings.CHIPS_INBOUND_MEDIA_LOST_SECONDS = 0
    [message] = received(chip)
    sim.stop()  # the server does not answer: every attempt of the queued fetch fails (eager: retries inline)
    settings.CHIPS_INBOUND_MEDIA_BACKOFF_SECONDS = 0
    settings.CHIPS_INBOUND_MEDIA_TIMEOUT_SECONDS = 1
    assert inbound_media.requeue_lost_media() == 1
    message.refresh_from_db()
    assert not message.media and message.error == inbound_media.UNAVAILABLE  # retried, then given up
    with scopes_disabled():  # as if it were still waiting: the marker keeps it from a second queueing
        Message.objects.filter(pk=message.pk).update(error="")
    assert inbound_media.lost_fetches() == [(message.pk, payload["media"]["url"], chip.tenant_id)]
    assert inbound_media.requeue_lost_media() == 0
