"""Benchmark: the stats sweep over 50 simulator containers on the real Docker engine.

Prints `stats_sweep ratio: <concurrent sweep time / one container's stats call>` (goal ≤ 3)
and, measured in the same run, the sequential sweep for comparison. Every container and
volume of this run is removed at the end.
"""
import statistics
import time

import docker
import pytest
from django.conf import settings
from django_scopes import scopes_disabled

from tests.bench.fleetkit import ensure_containers
from waha import manager
from waha.models import StatsSample, WahaContainer
from whago.models import Tenant

CONTAINERS = 50
IMAGE = "whago/waha-simulator:latest"


def remove_run_containers(client: docker.DockerClient) -> None:
    label = f"whago.instance={settings.WHAGO_INSTANCE}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)


@pytest.fixture
def engine(settings):
    assert settings.WHAGO_INSTANCE.startswith("test-"), "run through scripts/test.sh --bench"
    client = docker.from_env()
    client.images.get(IMAGE)  # built by `make simulator-image`
    settings.WAHA_RUNTIME = "docker"
    settings.WAHA_NETWORK_MODE = "host"
    settings.WAHA_IMAGE = IMAGE
    settings.WAHA_MEMORY_LIMIT = "128m"
    settings.WAHA_CPU_LIMIT = 0.5
    settings.WAHA_READY_TIMEOUT = 120
    settings.WAHA_SWEEP_THREADS = 64
    remove_run_containers(client)
    yield client
    remove_run_containers(client)
    client.close()


@pytest.mark.django_db(transaction=True)
def test_stats_sweep_over_50_containers(engine):
    tenants = [Tenant.objects.create(name=f"Bench {i}", slug=f"bench-{i}") for i in range(CONTAINERS)]
    started = time.monotonic()
    ensure_containers(tenants, timeout=600)
    with scopes_disabled():
        containers = list(WahaContainer.objects.all())
    assert len(containers) == CONTAINERS
    print(f"\n{CONTAINERS} containers up in {time.monotonic() - started:.1f} s")

    single_calls = []
    for _ in range(5):
        t0 = time.monotonic()
        manager.container_stats(containers[0])
        single_calls.append(time.monotonic() - t0)
    single = statistics.median(single_calls)

    t0 = time.monotonic()
    for container in containers:
        manager.container_stats(container)
    sequential = time.monotonic() - t0

    t0 = time.monotonic()
    report = manager.stats_sweep()
    concurrent = time.monotonic() - t0

    assert report == {"sampled": CONTAINERS, "failed": 0}
    with scopes_disabled():
        assert StatsSample.objects.count() == CONTAINERS
    ratio = concurrent / single
    print(f"one container's stats call: {single:.2f} s (median of 5)")
    print(f"sequential sweep of {CONTAINERS}: {sequential:.2f} s (ratio {sequential / single:.1f})")
    print(f"concurrent sweep of {CONTAINERS}: {concurrent:.2f} s, {settings.WAHA_SWEEP_THREADS} threads")
    print(f"stats_sweep ratio: {ratio:.2f}")
    assert ratio <= 3, f"concurrent sweep {concurrent:.2f} s is {ratio:.1f}× one call ({single:.2f} s)"
