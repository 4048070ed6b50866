"""Benchmark: signed message.ack events into /api/v1/webhooks/waha under gunicorn, on loopback.

Prints `webhooks ratio: <x>` = events per second the webhook endpoint stores and applies
(signature checked, event stored once, message moved to DELIVERED) / requests per second a
bare view answering 200 takes under the same server, with the same clients, in the same run.
Bounded: EVENTS requests per phase, CLIENTS keep-alive connections, a time limit.
"""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django_scopes import scopes_disabled

from chips.models import Message
from tests.bench.cpu import cpu_seconds, cpu_since
from tests.chips.conftest import Gunicorn, placed_chip, set_plan
from tests.waha.simkit import free_port
from waha.webhooks import sign
from whago import services as accounts

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "3000"))
CLIENTS = 8
WORKERS = 4  # gunicorn sync workers
TIME_LIMIT = 120  # seconds per phase


@pytest.fixture
def server(tmp_path, transactional_db):
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": "tests.chips.bench_site", "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "600",
           "DEBUG": "false"}  # as in production: no query log
    web = Gunicorn(tmp_path / "gunicorn.log", env, port, workers=WORKERS)
    try:
        yield web
    finally:
        web.stop()


def _run(url: str, bodies: list[tuple[bytes, dict]]) -> float:
    """Seconds to POST every body (CLIENTS keep-alive connections); every answer must be 200."""
    local = threading.local()
    deadline = time.monotonic() + TIME_LIMIT

    def post(item: tuple[bytes, dict]) -> None:
        if getattr(local, "http", None) is None:
            local.http = requests.Session()
        assert time.monotonic() < deadline, "time limit"
        body, headers = item
        response = local.http.post(url, data=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("stored", "ok"), response.text

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(post, bodies))
    return time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_webhooks_ratio(server):
    _user, tenant = accounts.sign_up(email="hooks@example.com.br", password="Bench-Hooks-2026!",
                                     full_name="Bench", company="Bench Webhooks")
    set_plan(tenant, "ENTERPRISE")
    chip = placed_chip(tenant)
    container = chip.waha_session.container
    with scopes_disabled():
        Message.objects.bulk_create([
            Message(tenant=tenant, chip=chip, peer=f"+55119{n:08d}", body="Pedido", status=Message.Status.SENT,
                    waha_id=f"true_55119{n:08d}@c.us_3EB0{n:016X}", attempts=1)
            for n in range(EVENTS + 200)
        ])

    def event(n: int) -> tuple[bytes, dict]:
        body = json.dumps({
            "id": f"evt_bench_{n}", "timestamp": 1_730_000_000_000 + n, "event": "message.ack",
            "session": chip.session_name, "metadata": None, "me": {"id": "5511999990001@c.us", "pushName": "Loja"},
            "payload": {"id": f"true_55119{n:08d}@c.us_3EB0{n:016X}", "from": "5511999990001@c.us",
                        "to": f"55119{n:08d}@c.us", "fromMe": True, "ack": 2, "ackName": "DEVICE",
                        "timestamp": 1_730_000_000, "body": "Pedido"},
            "engine": "WEBJS", "environment": {"version": "2024.10.8", "engine": "WEBJS", "tier": "PLUS"},
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Webhook-Hmac": sign(container.webhook_key, body),
                   "X-Webhook-Hmac-Algorithm": "sha512", "User-Agent": "WAHA/2024.10.8"}
        return body, headers

    hook_url = f"{server.url}/api/v1/webhooks/waha/{container.pk}"
    bare_url = f"{server.url}/bench/bare"
    warm = [event(EVENTS + n) for n in range(200)]
    _run(hook_url, warm)
    _run(bare_url, warm)
    bodies = [event(n) for n in range(EVENTS)]

    cpu = cpu_seconds()
    bare_seconds = _run(bare_url, bodies)
    bare_cpu, cpu = cpu_since(cpu), cpu_seconds()
    hook_seconds = _run(hook_url, bodies)
    hook_cpu = cpu_since(cpu)
    bare_again = _run(bare_url, bodies)  # the machine's load may change: the two bare runs are averaged

    with scopes_disabled():
        delivered = Message.objects.filter(tenant=tenant, status=Message.Status.DELIVERED).count()
    assert delivered == EVENTS + 200  # every event applied, exactly once
    # The same events again (WAHA retrying): acknowledged, nothing applied twice.
    duplicate = requests.post(hook_url, data=bodies[0][0], headers=bodies[0][1], timeout=10)
    assert duplicate.json()["status"] == "duplicate"

    bare_rate = 2 * EVENTS / (bare_seconds + bare_again)
    hook_rate = EVENTS / hook_seconds
    print(f"\nbare view: {bare_rate:.0f} req/s ({bare_seconds:.2f} s and {bare_again:.2f} s for {EVENTS}, "
          f"{CLIENTS} clients, {WORKERS} gunicorn workers)")
    print(f"message.ack webhooks: {hook_rate:.0f} events/s ({hook_seconds:.2f} s for {EVENTS})")
    print(f"CPU seconds, bare view: {bare_cpu}; webhooks: {hook_cpu}")
    print(f"webhooks ratio: {hook_rate / bare_rate:.2f}")
