"""Campaign test kit: chips served by real WAHA simulator processes, and real Celery workers that can be killed.

The simulator runs as a process on a loopback port (no container: campaigns do not need the
Docker engine, and a SIGKILLed worker must not take the simulator down with it). The chips,
their container and session rows are created as the WAHA placement would leave them; the
sessions are created and paired through the simulator's real API and /_sim/ routes, and post
their webhooks (signed with the container's key) to the live test server.
"""
from __future__ import annotations

from collections import defaultdict

import pytest
from django_scopes import scopes_disabled

from chips.models import Chip
from tests.chips.conftest import Worker, wait_until  # noqa: F401 - used by the campaign tests too
from tests.waha.simkit import SimulatorProcess, free_port
from waha.models import WahaContainer, WahaSession


class SimChips:
    """Working chips whose sessions live in simulator processes (one process per make() call)."""

    def __init__(self, tmp_path, webhook_base: str | None = None):
        self.tmp_path = tmp_path
        self.webhook_base = webhook_base
        self.sims: list[SimulatorProcess] = []
        self.sim_of: dict[int, SimulatorProcess] = {}

    def make(self, tenant, phones: list[str], extra_env: dict | None = None) -> list[Chip]:
        port = free_port()
        with scopes_disabled():
            container = WahaContainer.objects.create(
                tenant=tenant, name=f"sim-{port}", runtime="local", port=port, engine="plus", status="running",
                capacity=50, healthy=True,
            )
        sim = SimulatorProcess(None, api_key=container.api_key, port=port,
                               extra_args=["--starting-seconds", "0.05"], env=extra_env or {}).start()
        self.sims.append(sim)
        hooks = None
        if self.webhook_base:
            hooks = [{"url": f"{self.webhook_base}/api/v1/webhooks/waha/{container.pk}",
                      "events": ["session.status", "message", "message.ack"],
                      "hmac": {"key": container.webhook_key},
                      "retries": {"policy": "constant", "delaySeconds": 1, "attempts": 5}}]
        chips = []
        for number, phone in enumerate(phones, start=1):
            with scopes_disabled():
                chip = Chip.objects.create(tenant=tenant, alias=f"Chip {number}",
                                           status=Chip.Status.STARTING if hooks else Chip.Status.WORKING)
                chip.session_name = f"chip_{chip.pk}"
                chip.waha_session = WahaSession.objects.create(
                    tenant=tenant, container=container, name=chip.session_name, remote_name=chip.session_name,
                    status="WORKING", me_id=f"{phone}@c.us",
                )
                if not hooks:
                    chip.phone = "+" + phone
                chip.save()
            sim.create_working(chip.session_name, phone, f"Loja {number}", webhooks=hooks)
            self.sim_of[chip.pk] = sim
            chips.append(chip)
        if hooks:
            for chip in chips:
                wait_until(lambda c=chip: chip_status(c.pk) == Chip.Status.WORKING, 15,
                           message=f"chip {chip.pk} WORKING through its webhook")
        return chips

    def sent(self, chip: Chip) -> list[dict]:
        """Every message the chip's session accepted (the simulator's own record), in order."""
        sim = self.sim_of[chip.pk]
        messages, offset = [], 0
        while True:
            page = sim.get(f"/_sim/sessions/{chip.session_name}/messages",
                           params={"offset": offset, "limit": 1000}).json()
            messages += page["messages"]
            offset += len(page["messages"])
            if offset >= page["total"] or not page["messages"]:
                return messages

    def sends_by_chat(self, chips, body_prefix: str = "") -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for chip in chips:
            for message in self.sent(chip):
                if message["body"].startswith(body_prefix):
                    counts[message["chatId"]] += 1
        return dict(counts)

    def inbound(self, chip: Chip, phone: str, body: str) -> None:
        response = self.sim_of[chip.pk].post(f"/_sim/sessions/{chip.session_name}/inbound",
                                             {"from": phone, "body": body, "pushName": "Cliente"})
        assert response.status_code == 201, response.text

    def fail(self, chip: Chip) -> None:
        """The phone drops the session: FAILED, announced by a session.status webhook."""
        response = self.sim_of[chip.pk].post(f"/_sim/sessions/{chip.session_name}/fail", {"reason": "test"})
        assert response.status_code == 201, response.text

    def behaviour(self, chip: Chip, **values) -> None:
        response = self.sim_of[chip.pk].put("/_sim/behaviour", values)
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        for sim in self.sims:
            sim.stop()


def chip_status(pk: int) -> str:
    with scopes_disabled():
        return Chip.all_objects.get(pk=pk).status


# Fast leases and slices: a dead worker's lanes are taken over within seconds.
CAMPAIGN_WORKER_ENV = {
    "CAMPAIGN_LEASE_SECONDS": "2",
    "CAMPAIGN_LANE_SLICE_SECONDS": "4",
    "CAMPAIGN_INLINE_WAIT_SECONDS": "2",
    "CHIPS_SEND_BACKOFF_SECONDS": "0.3",
}


@pytest.fixture
def sim_chips(tmp_path, live_server, settings):
    """SimChips posting their webhooks to the live server; every simulator stopped at teardown."""
    kit = SimChips(tmp_path, live_server.url.replace("localhost", "127.0.0.1"))
    yield kit
    kit.stop()


@pytest.fixture
def campaign_workers(request, transactional_db, tmp_path, settings):
    """start() real workers with the campaign environment; all stopped at teardown."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    for key, value in CAMPAIGN_WORKER_ENV.items():
        setattr(settings, key, type(getattr(settings, key))(value))
    started: list[Worker] = []

    def start(**env) -> Worker:
        worker = Worker(tmp_path / f"worker{len(started)}.log", {**CAMPAIGN_WORKER_ENV, **env})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
