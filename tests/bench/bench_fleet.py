"""Benchmark: a fleet of WAHA simulator containers on the single-node swarm (runtime swarm) and on
the plain docker runtime, in the same run, then 50 sessions brought back after their tasks were
killed.

Prints `fleet ratio: <swarm time / docker time>` (goal ≤ 1.5): the same N containers provisioned
through WHAGO (ensure_container, 10 at a time, each waited for until its API answers) on each
runtime, host networking on loopback for both. Then, on the swarm fleet, 50 WORKING sessions
(5 in each of 10 services) have their tasks killed at once, and health sweeps run until WHAGO
sees all 50 WORKING again: `sessions back: 50 in <s>`. Services, containers and volumes of this
run are removed at the end; the swarm is left as it was found (tests/waha/swarmkit.py).
"""
import os
import time

import pytest
import requests
from django_scopes import scopes_disabled

from tests.bench.fleetkit import ensure_containers
from tests.waha.conftest import docker_client, remove_run_containers, simulator_image, waha_info  # noqa: F401
from tests.waha.swarmkit import swarm, swarm_node, task_container  # noqa: F401
from waha import manager
from waha.models import WahaContainer, WahaSession
from whago.models import Tenant

FLEET = int(os.environ.get("BENCH_FLEET_SIZE", "20"))
ROUNDS = 2
RECOVERY_CONTAINERS, SESSIONS_EACH = 10, 5
SWEEPS_DEADLINE = 300.0


@pytest.fixture
def fleet_settings(settings, simulator_image, swarm_node):  # noqa: F811 - the fixtures imported above
    remove_run_containers()
    settings.WAHA_NETWORK_MODE = "host"
    settings.WAHA_SWARM_NODE_ADDRESS = "127.0.0.1"
    settings.WAHA_IMAGE = simulator_image
    settings.WAHA_ENGINE = "plus"
    settings.WAHA_MEMORY_LIMIT = "128m"
    settings.WAHA_CPU_LIMIT = 0.5
    settings.WAHA_READY_TIMEOUT = 120
    settings.WAHA_SWARM_MEMORY_RESERVATION = 0.5
    # Nothing listens there: the simulators' webhooks go nowhere instead of to another run's app.
    settings.WAHA_WEBHOOK_URL = "http://127.0.0.1:9/api/v1/webhooks/waha"
    yield settings
    remove_run_containers()


def provision(runtime: str, settings, prefix: str) -> tuple[float, list[Tenant]]:
    """N tenants' containers made through WHAGO on a runtime, 10 at a time; returns (seconds, tenants)."""
    settings.WAHA_RUNTIME = runtime
    tenants = [Tenant.objects.create(name=f"Frota {prefix} {i}", slug=f"frota-{prefix}-{i}") for i in range(FLEET)]
    elapsed = ensure_containers(tenants)
    with scopes_disabled():
        assert WahaContainer.objects.filter(runtime=runtime).count() == FLEET
    return elapsed, tenants


def working_sessions(tenants: list[Tenant]) -> list[WahaSession]:
    """SESSIONS_EACH sessions in each tenant's container, paired through the simulator: WORKING."""
    sessions = [manager.create_session(tenant, f"chip_{t}_{n}") for t, tenant in enumerate(tenants)
                for n in range(SESSIONS_EACH)]
    for number, session in enumerate(sessions):
        container = session.container
        deadline = time.monotonic() + 60
        while waha_info(session)["status"] != "SCAN_QR_CODE":
            assert time.monotonic() < deadline, f"{session.name} never asked for a scan"
            time.sleep(0.1)
        requests.post(f"{container.base_url}/_sim/sessions/{session.remote_name}/scan",
                      json={"phone": f"5511990{number:06d}"}, headers={"X-Api-Key": container.api_key},
                      timeout=10).raise_for_status()
    manager.health_sweep()
    return sessions


def working_count(sessions: list[WahaSession]) -> int:
    with scopes_disabled():
        return WahaSession.objects.filter(pk__in=[s.pk for s in sessions], status="WORKING").count()


@pytest.mark.django_db(transaction=True)
def test_fleet_on_swarm_against_docker(fleet_settings, docker_client):  # noqa: F811
    times: dict[str, list[float]] = {"docker": [], "swarm": []}
    for round_ in range(ROUNDS):  # alternated, so that the machine's load weighs on both alike
        for runtime in ("docker", "swarm"):
            if times["docker"]:
                remove_run_containers()  # the previous fleet goes, rows and all
                with scopes_disabled():
                    WahaContainer.objects.all().delete()
            elapsed, tenants = provision(runtime, fleet_settings, f"{runtime}{round_}")
            times[runtime].append(elapsed)
    ratio = sum(times["swarm"]) / sum(times["docker"])
    for runtime, values in times.items():
        print(f"\n{FLEET} containers through WHAGO on {runtime}: " + ", ".join(f"{v:.1f} s" for v in values), end="")
    print(f"\nfleet ratio: {ratio:.2f}")

    sessions = working_sessions(tenants[:RECOVERY_CONTAINERS])
    total = len(sessions)
    deadline = time.monotonic() + 60
    while working_count(sessions) < total:
        assert time.monotonic() < deadline, f"only {working_count(sessions)} of {total} sessions WORKING"
        time.sleep(0.5)
        manager.health_sweep()
    with scopes_disabled():
        containers = list(WahaContainer.objects.filter(sessions__in=sessions).distinct())
    killed = [task_container(docker_client, c.runtime_id) for c in containers]
    restarts = {c.pk: c.restart_count for c in containers}

    def recovered() -> bool:
        """WHAGO saw every killed task replaced (its sweep waited for it and resumed its sessions),
        every container answers, and all the sessions are WORKING as WAHA reports them."""
        with scopes_disabled():
            rows = WahaContainer.objects.filter(pk__in=restarts)
            seen = all(r.restart_count > restarts[r.pk] and r.healthy for r in rows)
        return seen and working_count(sessions) == total

    started = time.monotonic()
    for container in killed:
        container.kill()
    sweeps = 0
    while not recovered():
        assert time.monotonic() - started < SWEEPS_DEADLINE, (
            f"{working_count(sessions)} of {total} sessions WORKING after {SWEEPS_DEADLINE:.0f} s"
        )
        manager.health_sweep()
        sweeps += 1
    back = time.monotonic() - started
    print(f"sessions back: {total} WORKING in {back:.1f} s after their {len(killed)} tasks were killed "
          f"({sweeps} health sweeps)")
    assert ratio <= 1.5, f"the swarm fleet took {ratio:.2f}× the docker fleet's time"
