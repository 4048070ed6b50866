"""`manage.py waha_doctor` as operators run it: a real process, real exit codes."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT, worker_env
from waha import manager

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def doctor(**env) -> subprocess.CompletedProcess:
    full = worker_env(WAHA_RUNTIME="docker", WAHA_NETWORK_MODE="host", WAHA_IMAGE="whago/waha-simulator:latest")
    full.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "waha_doctor"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_all_good_exits_zero(waha_docker, make_tenant):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)

    result = doctor()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "image whago/waha-simulator:latest is present" in result.stdout
    container.refresh_from_db()
    assert (f"{container.name} (tenant {tenant.name}, port {container.port}): healthy, "
            f"WAHA {container.version} plus {container.whatsapp_engine}, 0 session(s)") in result.stdout
    assert "answers without its API key" not in result.stdout
    assert f"{container.name} (tenant {tenant.name}, port {container.port}): limits " in result.stdout
    assert "no orphan containers" in result.stdout
    assert "All good." in result.stdout


def test_missing_image_says_how_to_get_it(waha_docker):
    result = doctor(WAHA_IMAGE="whago/waha-simulator:missing")
    assert result.returncode == 1
    assert "whago/waha-simulator:missing is missing: build it with `make simulator-image`" in result.stderr

    result = doctor(WAHA_IMAGE="devlikeapro/waha:never-pulled")
    assert result.returncode == 1
    assert "docker pull devlikeapro/waha:never-pulled" in result.stderr


def test_unreachable_docker_engine(waha_docker):
    result = doctor(DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert "Docker engine unreachable" in result.stderr


def test_dead_container_orphan_and_full_port_range_are_reported(waha_docker, make_tenant, docker_client):
    tenant = make_tenant()
    container = manager.ensure_container(tenant)
    docker_client.containers.get(container.runtime_id).kill()
    orphan = docker_client.containers.create(
        "whago/waha-simulator:latest",
        name=f"whago-{manager.instance_slug()}-waha-doctor-orphan",
        labels={"whago.service": "waha", "whago.instance": waha_docker.WHAGO_INSTANCE},
    )

    result = doctor(WAHA_PORT_RANGE=f"{container.port}-{container.port}")

    assert result.returncode == 1
    assert f"{container.name}" in result.stderr and "the container is exited" in result.stderr
    assert f"orphan docker container {orphan.name}" in result.stderr
    assert "the range is exhausted" in result.stderr
    assert "3 problem(s) found." in result.stderr
