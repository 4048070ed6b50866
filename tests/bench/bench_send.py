"""Benchmark: 2,000 messages through the API → send tasks → the simulator (Docker), on loopback.

Prints `send ratio: <x>` = the pipeline's messages per second (from the first API request
until the simulator has accepted all 2,000) / the messages per second of a raw keep-alive
loop posting sendText straight to the same simulator session, measured in the same run.
The app runs under gunicorn and a real Celery worker, on the test database; every
container of the run is removed at the end.
"""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django_scopes import scopes_disabled

from chips import lifecycle
from chips.models import Chip, Message
from tests.bench.cpu import cpu_seconds, cpu_since, used_since
from tests.chips.conftest import (  # noqa: F401 - fixtures
    Gunicorn,
    Worker,
    _leave_no_waha_containers,
    docker_client,
    remove_run_containers,
    set_plan,
    sim_of,
    simulator_image,
    wait_chip,
    wait_until,
)
from tests.conftest import confirm_email
from tests.waha.simkit import free_port
from whago import services as accounts

MESSAGES = int(os.environ.get("BENCH_SEND_MESSAGES", "2000"))
CLIENTS = 16  # concurrent API clients in the one-message-per-request comparison
SINGLE = int(os.environ.get("BENCH_SEND_SINGLE", "500"))
BATCH = 100  # messages per request on the batch endpoint
TIME_LIMIT = 240  # seconds: the benchmark fails rather than run on


@pytest.fixture
def app(tmp_path, settings, simulator_image, transactional_db):  # noqa: F811
    """gunicorn + a Celery worker on the test database, WAHA containers from the simulator image."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    port = free_port()
    env = {
        "WAHA_RUNTIME": "docker", "WAHA_NETWORK_MODE": "host", "WAHA_IMAGE": simulator_image, "WAHA_ENGINE": "plus",
        "WAHA_MEMORY_LIMIT": "512m", "WAHA_CPU_LIMIT": "1.0", "WAHA_READY_TIMEOUT": "30",
        "WAHA_WEBHOOK_URL": f"http://127.0.0.1:{port}/api/v1/webhooks/waha",
        "API_THROTTLE_RATE": "1000000/min", "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "600",
        "DEBUG": "false",  # as in production: no query log
    }
    for key, value in env.items():
        if key.startswith("WAHA_"):
            setattr(settings, key, type(getattr(settings, key))(value))
    started = []
    try:
        started.append(Gunicorn(tmp_path / "gunicorn.log", env, port, workers=3))
        started.append(Worker(tmp_path / "worker.log", env, pool="prefork", concurrency=4))
        yield started[0]
    finally:
        for process in reversed(started):
            process.stop()
        remove_run_containers()


def _raw_loop(base_url: str, api_key: str, session: str, count: int) -> float:
    """Seconds to post `count` sendText requests one after another on one keep-alive connection."""
    http = requests.Session()
    http.headers["X-Api-Key"] = api_key
    started = time.monotonic()
    for n in range(count):
        response = http.post(f"{base_url}/api/sendText", json={
            "session": session, "chatId": f"55119{n:08d}@c.us", "text": f"raw {n}"}, timeout=10)
        assert response.status_code == 201, response.text
    return time.monotonic() - started


def _sent_count(sim, session: str) -> int:
    return sim.call("GET", "/_sim/stats").json()["sessions"][session]["sent"]


def _drain(sim, timeout: float = 120) -> None:
    """Wait until the simulator has delivered every pending webhook (acks) to the app."""
    wait_until(lambda: sim.call("GET", "/_sim/stats").json()["webhooks"]["pending"] == 0, timeout=timeout,
               interval=0.2, message="the acks of the previous phase to be delivered")


@pytest.mark.django_db(transaction=True)
def test_send_ratio(app):
    user, tenant = accounts.sign_up(email="bench@example.com.br", password="Bench-Send-2026!",
                                    full_name="Bench", company="Bench Envios")
    confirm_email(user)
    set_plan(tenant, "ENTERPRISE")
    with scopes_disabled():
        owner = tenant.memberships.first().user
    _key, raw_key = accounts.create_api_key(tenant=tenant, name="bench", created_by=owner)
    chip = lifecycle.create_chip(tenant, "Bench")
    chip = wait_chip(chip.pk, Chip.Status.SCAN_QR_CODE, timeout=60)
    sim = sim_of(chip)
    sim.scan(chip.session_name, "5511999990001", "Bench")
    chip = wait_chip(chip.pk, Chip.Status.WORKING)
    container = chip.waha_session.container
    deadline = time.monotonic() + TIME_LIMIT

    warm = _raw_loop(container.base_url, container.api_key, chip.session_name, 200)
    _drain(sim)
    cpu = cpu_seconds()
    raw_seconds = _raw_loop(container.base_url, container.api_key, chip.session_name, MESSAGES)
    raw_cpu = cpu_since(cpu)
    _drain(sim)
    raw_cpu_drained = cpu_since(cpu)

    headers = {"Authorization": f"Bearer {raw_key}"}
    local = threading.local()

    def http() -> requests.Session:
        if getattr(local, "http", None) is None:
            local.http = requests.Session()
            local.http.headers.update(headers)
        return local.http

    def post_batch(first: int) -> None:
        messages = [{"chip": chip.pk, "to": f"+55 11 9{n:08d}", "text": f"Pedido {n} confirmado",
                     "idempotency_key": f"bench-{n}"} for n in range(first, min(first + BATCH, MESSAGES))]
        response = http().post(f"{app.url}/api/v1/messages/batch", json={"messages": messages}, timeout=60)
        assert response.status_code == 201, response.text

    def post_one(n: int) -> None:
        response = http().post(f"{app.url}/api/v1/messages/", timeout=30, json={
            "chip": chip.pk, "to": f"+55 21 9{n:08d}", "text": f"Pedido {n} confirmado"})
        assert response.status_code == 201, response.text

    def pipeline(send, jobs, count: int, clients: int) -> tuple[float, float]:
        """Seconds until the simulator has `count` more messages, and until the API calls returned."""
        before = _sent_count(sim, chip.session_name)
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, jobs))
        api_done = time.monotonic() - started
        wait_until(lambda: _sent_count(sim, chip.session_name) >= before + count,
                   timeout=max(1, deadline - time.monotonic()), interval=0.02, message="the simulator to get them all")
        return time.monotonic() - started, api_done

    before = _sent_count(sim, chip.session_name)
    cpu = cpu_seconds()
    pipeline_seconds, api_done = pipeline(post_batch, range(0, MESSAGES, BATCH), MESSAGES, 4)
    pipeline_used = used_since(cpu)
    pipeline_cpu = cpu_since(cpu)
    pipeline_rate = MESSAGES / pipeline_seconds
    assert _sent_count(sim, chip.session_name) == before + MESSAGES  # each message sent exactly once
    _drain(sim)
    pipeline_cpu_drained = cpu_since(cpu)
    # The raw loop again: the machine's load may have changed meanwhile (the two runs are averaged).
    raw_again = _raw_loop(container.base_url, container.api_key, chip.session_name, MESSAGES)
    raw_rate = 2 * MESSAGES / (raw_seconds + raw_again)
    _drain(sim)
    wait_until(lambda: not Message.objects.with_scopes_disabled().filter(status=Message.Status.QUEUED).exists(),
               timeout=60, message="every message recorded SENT")
    with scopes_disabled():
        statuses = {s: Message.objects.filter(status=s).count() for s in Message.Status.values}
    assert statuses[Message.Status.FAILED] == 0, statuses
    # For comparison, one API request per message (fewer messages: it is the slow way).
    single_seconds, _ = pipeline(post_one, range(SINGLE), SINGLE, CLIENTS)
    single_rate = SINGLE / single_seconds

    print(f"\nraw sendText loop: {raw_rate:.0f} msg/s ({raw_seconds:.2f} s and {raw_again:.2f} s for {MESSAGES}, "
          f"before and after; warm-up {warm:.2f} s)")
    print(f"API (batches of {BATCH}) → tasks → simulator: {pipeline_rate:.0f} msg/s ({pipeline_seconds:.2f} s for "
          f"{MESSAGES}; API calls done in {api_done:.2f} s)")
    print(f"API (one request per message, {CLIENTS} clients) → tasks → simulator: {single_rate:.0f} msg/s "
          f"({single_seconds:.2f} s for {SINGLE}; ratio {single_rate / raw_rate:.2f})")
    print(f"CPU seconds, raw loop: {raw_cpu} (acks drained: {raw_cpu_drained})")
    print(f"CPU seconds, batches: {pipeline_cpu} (acks drained: {pipeline_cpu_drained})")
    print(f"message statuses after the batches: {statuses}")
    print(f"PostgreSQL CPU per message (batches): {pipeline_used.get('postgres', 0.0) / MESSAGES * 1000:.2f} ms")
    print(f"send ratio: {pipeline_rate / raw_rate:.2f}")
