"""The simulator's container image on the real Docker engine (built by scripts/setup.sh / make simulator-image)."""
import io
import os
import subprocess
import sys
import uuid

import docker
import pytest
import requests
from PIL import Image
from pyzbar.pyzbar import decode

from tests.waha.simkit import ROOT, free_port, wait_until
from waha.simulator import image as image_build

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("WAHA_IMAGE", image_build.IMAGE)


@pytest.fixture(scope="module")
def engine():
    client = docker.from_env()
    yield client
    client.close()


def test_image_exists_and_matches_the_sources(engine):
    try:
        img = engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{IMAGE} is missing: run `make simulator-image` (scripts/setup.sh all builds it)")
    assert img.labels[image_build.HASH_LABEL] == image_build.source_hash(), "image is stale: run make simulator-image"
    assert engine.images.get(image_build.BASE_IMAGE).labels["whago.base"] == "debian-python-bookworm"


def test_a_second_build_is_a_no_op(engine):
    before = engine.images.get(IMAGE).id
    result = subprocess.run([sys.executable, "-m", "waha.simulator.image"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert engine.images.get(IMAGE).id == before


def listening_addresses(container, port: int) -> set[str]:
    """Local addresses (hex, /proc/net/tcp order) the container listens on for this port."""
    out = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).output.decode()
    found = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and ":" in fields[1] and fields[3] == "0A":  # LISTEN
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port:
                found.add(address)
    return found


def test_container_round_trip_with_webhooks_and_persistence(engine, webhook_receiver):
    port, key, tag = free_port(), "image-test-key", uuid.uuid4().hex[:10]
    volume = engine.volumes.create(name=f"whago-test-sim-{tag}", labels={"whago.test": "simulator-image"})
    container = None
    try:
        container = engine.containers.run(
            IMAGE,
            name=f"whago-test-sim-{tag}",
            detach=True,
            network_mode="host",
            environment={"WHATSAPP_API_PORT": str(port), "WAHA_API_KEY": key, "WAHA_SIM_STARTING_SECONDS": "0.1"},
            volumes={volume.name: {"bind": "/app/.sessions", "mode": "rw"}},
            labels={"whago.test": "simulator-image"},
        )
        http = requests.Session()
        http.headers["X-Api-Key"] = key
        base = f"http://127.0.0.1:{port}"

        def health_ok():
            try:
                return http.get(base + "/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(health_ok, timeout=20, interval=0.1, message="container never answered /health")
        assert requests.get(base + "/health", timeout=5).status_code == 401
        assert http.get(base + "/api/server/version", timeout=5).json()["tier"] == "PLUS"
        assert http.get(base + "/api/server/version", timeout=5).json()["engine"] == "NOWEB"
        assert listening_addresses(container, port) == {"0100007F"}  # 127.0.0.1 only

        hook = webhook_receiver.hook(["session.status", "message.ack"])
        created = http.post(base + "/api/sessions", json={"name": "chip_img", "config": {"webhooks": [hook]},
                                                           "start": True}, timeout=5)
        assert created.status_code == 201
        wait_until(lambda: http.get(base + "/api/sessions/chip_img", timeout=5).json()["status"] == "SCAN_QR_CODE")
        raw = http.get(base + "/api/chip_img/auth/qr", params={"format": "raw"}, timeout=5).json()["value"]
        png = http.get(base + "/api/chip_img/auth/qr", timeout=5).content
        assert decode(Image.open(io.BytesIO(png)))[0].data.decode() == raw

        scanned = http.post(base + "/_sim/sessions/chip_img/scan", json={"phone": "5511999990000", "value": raw},
                            timeout=5)
        assert scanned.status_code == 201
        webhook_receiver.wait_for(lambda b: b["event"] == "session.status" and b["payload"]["status"] == "WORKING")
        sent = http.post(base + "/api/sendText", json={"session": "chip_img", "chatId": "5511988887777",
                                                        "text": "oi"}, timeout=5).json()
        msg_id = f"true_5511988887777@c.us_{sent['key']['id']}"  # NOWEB, the image's default engine
        webhook_receiver.wait_for(lambda b: b["event"] == "message.ack" and b["payload"]["id"] == msg_id)
        assert all(webhook_receiver.valid_signature(r) for r in webhook_receiver.received)

        container.stop(timeout=60)
        container.reload()
        # It stopped by itself on SIGTERM (SIGKILLed after the timeout it would say 137).
        assert container.attrs["State"]["ExitCode"] == 0, "SIGTERM should stop the simulator"
        container.start()
        wait_until(health_ok, timeout=20, interval=0.1)
        wait_until(lambda: http.get(base + "/api/sessions/chip_img", timeout=5).json()["status"] == "WORKING")
        workings = [s for s in webhook_receiver.statuses("chip_img") if s == "WORKING"]
        wait_until(lambda: len([s for s in webhook_receiver.statuses("chip_img") if s == "WORKING"]) == 2,
                   message=f"no WORKING after restart: {workings}")
        assert http.get(base + "/_sim/stats", timeout=5).json()["sessions"]["chip_img"]["sent"] == 1
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)
    assert engine.containers.list(all=True, filters={"label": "whago.test=simulator-image"}) == []


def test_the_profile_comes_from_the_environment(engine):
    port = free_port()
    container = engine.containers.run(
        IMAGE, name=f"whago-test-sim-{uuid.uuid4().hex[:10]}", detach=True, network_mode="host",
        environment={"WHATSAPP_API_PORT": str(port), "WAHA_API_KEY": "image-key", "WAHA_SIM_PROFILE": "core-2024.10"},
        labels={"whago.test": "simulator-image"},
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def version():
            try:
                return requests.get(base + "/api/server/version", timeout=2).json()  # no key: Core does not check
            except requests.ConnectionError:
                return None

        assert wait_until(version, timeout=20, interval=0.1) == {
            "version": "2024.10.8", "engine": "NOWEB", "tier": "CORE", "browser": "/usr/bin/chromium"}
        assert requests.get(base + "/api/sessions?all=true", timeout=5).json() == [
            {"name": "default", "status": "STOPPED", "config": None, "me": None}]
    finally:
        container.remove(force=True)
