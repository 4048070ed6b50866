"""Fixtures of the chips tests: plans, API clients, real workers, the simulator image in Docker."""
import io
import json
import subprocess

import pytest
import requests
from django.conf import settings
from django_scopes import scopes_disabled

from billing.models import Plan, Subscription
from chips import lifecycle
from chips.models import Chip, Message
from tests.conftest import ROOT, Worker, worker_env  # noqa: F401 - Worker is used from here too
from tests.waha.conftest import (  # noqa: F401 - fixtures shared with the waha tests
    _leave_no_waha_containers,
    docker_client,
    remove_run_containers,
    simulator_image,
)
from tests.waha.realwaha import real_target, simulator_target, waha_target  # noqa: F401 - conformance targets
from tests.waiting import wait_until
from waha.models import WahaContainer
from whago.services import create_api_key

DOCKER = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def set_plan(tenant, code: str) -> None:
    """Put the tenant on a seeded plan (FREE: 1 chip, no API; BUSINESS: 3 chips and the API)."""
    with scopes_disabled():
        Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code=code),
                                                          status=Subscription.Status.ACTIVE)


def chip_row(pk: int) -> Chip:
    with scopes_disabled():
        return Chip.all_objects.select_related("waha_session__container").get(pk=pk)


def message_row(pk: int) -> Message:
    with scopes_disabled():
        return Message.objects.get(pk=pk)


def wait_chip(pk: int, status: str, timeout: float = 30.0) -> Chip:
    def check():
        chip = chip_row(pk)
        return chip if chip.status == status else None

    return wait_until(check, timeout, message=f"chip {pk} to be {status} (is {chip_row(pk).status})")


def wait_message(pk: int, status: str, timeout: float = 20.0) -> Message:
    def check():
        message = message_row(pk)
        return message if message.status == status else None

    return wait_until(check, timeout, message=f"message {pk} to be {status} (is {message_row(pk).status})")


class Sim:
    """The /_sim/ control routes of a chip's simulator container (loopback, with its API key)."""

    def __init__(self, container: WahaContainer):
        self.base = container.base_url
        self.http = requests.Session()
        self.http.headers["X-Api-Key"] = container.api_key

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.http.request(method, self.base + path, timeout=10, **kwargs)
        assert response.status_code < 400, response.text
        return response

    def scan(self, session: str, phone: str, push_name: str = "Loja", **extra) -> dict:
        return self.call("POST", f"/_sim/sessions/{session}/scan", json={"phone": phone, "pushName": push_name,
                                                                          **extra}).json()

    def inbound(self, session: str, phone: str, body: str, push_name: str = "Ana") -> dict:
        return self.call("POST", f"/_sim/sessions/{session}/inbound",
                         json={"from": phone, "body": body, "pushName": push_name}).json()

    def sent(self, session: str) -> list[dict]:
        return self.call("GET", f"/_sim/sessions/{session}/messages", params={"limit": 1000}).json()["messages"]

    def behaviour(self, **values) -> None:
        self.call("PUT", "/_sim/behaviour", json=values)

    def sessions(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.call("GET", "/api/sessions", params={"all": "true"}).json()}


def sim_of(chip: Chip) -> Sim:
    return Sim(chip_row(chip.pk).waha_session.container)


class Gunicorn:
    """The app under gunicorn on a loopback port, sharing the test database (benchmarks)."""

    def __init__(self, log_path, env: dict, port: int, workers: int = 2, threads: int = 1):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "whago.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--backlog", "2048",
             "--workers", str(workers), "--threads", str(threads), "--worker-class",
             "gthread" if threads > 1 else "sync", "--keep-alive", "30", "--log-level", "info"],
            cwd=ROOT, env=worker_env(**env), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._answers, 30, 0.2, "gunicorn to answer")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.log_path.read_text()}")
        try:
            requests.get(self.url + "/", timeout=5)
            return True
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def waha_env(settings, live_server, simulator_image):  # noqa: F811
    """Docker runtime with the simulator image, host networking, webhooks to the live app.

    Returns the environment a worker needs to do the same.
    """
    base = live_server.url.replace("localhost", "127.0.0.1")
    values = {
        "WAHA_RUNTIME": "docker",
        "WAHA_NETWORK_MODE": "host",
        "WAHA_IMAGE": simulator_image,
        "WAHA_ENGINE": "plus",
        "WAHA_MEMORY_LIMIT": "256m",
        "WAHA_CPU_LIMIT": "1.0",
        "WAHA_READY_TIMEOUT": "30",
        "WAHA_WEBHOOK_URL": f"{base}/api/v1/webhooks/waha",
        "OUTGOING_WEBHOOK_BACKOFF_SECONDS": "0.5",
    }
    for key, value in values.items():
        setattr(settings, key, type(getattr(settings, key))(value))
    values["SITE_URL"] = base
    return values


@pytest.fixture
def start_worker(request, transactional_db, tmp_path, waha_env):
    """Start real workers (start_worker(**env)); all are stopped at teardown."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    started: list[Worker] = []

    def start(**env) -> Worker:
        worker = Worker(tmp_path / f"worker{len(started)}.log", {**waha_env, **env})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    # This test's containers go now: their webhooks must not reach the next tests.
    remove_run_containers()


@pytest.fixture
def worker(start_worker):
    """One real worker with the docker runtime and short retry waits."""
    return start_worker(CHIPS_SEND_BACKOFF_SECONDS="0.3", CHIPS_SEND_MAX_ATTEMPTS="3")


def working_chip(tenant, alias: str = "Vendas", phone: str = "5511999990001", push_name: str = "Loja") -> Chip:
    """A chip created through the service, provisioned by the worker and paired through the simulator."""
    chip = lifecycle.create_chip(tenant, alias)
    chip = wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE)
    sim_of(chip).scan(chip.session_name, phone, push_name)
    return wait_chip(chip.pk, Chip.Status.WORKING)


def png_bytes(color: str = "red") -> bytes:
    """A small real PNG image."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def api(client_factory):
    """api(tenant) -> a test client sending that tenant's new API key on every request."""

    def make(tenant):
        from whago.models import Membership

        with scopes_disabled():
            owner = Membership.objects.filter(tenant=tenant).first().user
        _key, raw = create_api_key(tenant=tenant, name="tests", created_by=owner)
        return client_factory(HTTP_AUTHORIZATION=f"Bearer {raw}")

    return make



def placed_chip(tenant, status: str = Chip.Status.WORKING, phone: str = "+5511999990001", alias: str = "Vendas"):
    """A chip with container and session rows but no runtime (for tests that post webhooks themselves)."""
    from waha.models import WahaSession

    with scopes_disabled():
        chip = Chip.objects.create(tenant=tenant, alias=alias, status=status, phone=phone)
        chip.session_name = f"chip_{chip.pk}"
        container = WahaContainer.objects.create(
            tenant=tenant, name=f"placed-{chip.pk}", runtime="docker", port=40000 + chip.pk
        )
        chip.waha_session = WahaSession.objects.create(
            tenant=tenant, container=container, name=chip.session_name, remote_name=chip.session_name,
            status=status if status != Chip.Status.DISCONNECTED else "STOPPED",
        )
        chip.save()
    return chip


def post_event(client, chip: Chip, event: str, payload: dict, event_id: str, timestamp: int = 1_730_000_000_000,
               me: dict | None = None):
    """POST a WAHA webhook for the chip's session, signed with its container's key."""
    from waha.webhooks import sign

    container = chip_row(chip.pk).waha_session.container
    body = json.dumps({
        "id": event_id, "timestamp": timestamp, "event": event, "session": chip.session_name, "metadata": None,
        "me": me, "payload": payload, "engine": "WEBJS",
    }).encode()
    return client.post(f"/api/v1/webhooks/waha/{container.pk}", data=body, content_type="application/json",
                       HTTP_X_WEBHOOK_HMAC=sign(container.webhook_key, body), HTTP_X_WEBHOOK_HMAC_ALGORITHM="sha512")
