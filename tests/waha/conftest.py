"""Fixtures for WAHA tests: a real simulator subprocess and a real webhook receiver."""
import pytest

from tests.waha.simkit import SimulatorProcess, WebhookReceiver


@pytest.fixture
def simulator_factory(tmp_path):
    """Start simulators with custom options; all are stopped at teardown.

    simulator_factory(engine="core", extra_args=["--qr-rotate-seconds", "1"], env={...}, data_dir=path)
    """
    started: list[SimulatorProcess] = []

    def make(data_dir=None, **kwargs) -> SimulatorProcess:
        if data_dir is None:
            data_dir = tmp_path / f"sim-data-{len(started)}"
        kwargs.setdefault("extra_args", ["--starting-seconds", "0.1"])
        sim = SimulatorProcess(data_dir, **kwargs)
        started.append(sim)
        return sim.start()

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(simulator_factory) -> SimulatorProcess:
    """A plus-engine simulator with /_sim/ control, an API key and a data dir; .base_url, .api_key, .restart()."""
    return simulator_factory()


@pytest.fixture
def webhook_receiver():
    """A webhook receiver on 127.0.0.1 whose hooks are signed with the key 'whsec-test'."""
    receiver = WebhookReceiver(hmac_key="whsec-test")
    yield receiver
    receiver.close()


class SignalRecorder:
    """Records every call of the waha signals: .calls[name] is a list of kwargs dicts."""

    NAMES = ("session_status_changed", "message_received", "message_ack")

    def __init__(self) -> None:
        self.calls = {name: [] for name in self.NAMES}
        self._receivers = {}

    def connect(self) -> None:
        """Listen to the three signals."""
        from waha import signals

        for name in self.NAMES:
            def receiver(sender, _name=name, **kwargs):
                kwargs.pop("signal", None)
                self.calls[_name].append(kwargs)

            self._receivers[name] = receiver
            getattr(signals, name).connect(receiver, weak=False)

    def disconnect(self) -> None:
        """Stop listening."""
        from waha import signals

        for name, receiver in self._receivers.items():
            getattr(signals, name).disconnect(receiver)

    def find(self, name: str, **filters) -> dict:
        """The first call of signal `name` whose kwargs match the filters."""
        for call in self.calls[name]:
            if all(call.get(key) == value for key, value in filters.items()):
                return call
        raise AssertionError(f"no {name} call with {filters}; calls: {self.calls[name]}")


@pytest.fixture
def waha_signals():
    """Record the waha signals during a test (reconstructed by the simulator helper, see the report)."""
    recorder = SignalRecorder()
    recorder.connect()
    yield recorder
    recorder.disconnect()


# --- Docker-engine fixtures (waha helper) ---------------------------------------------
# A session-wide autouse fixture removes every container and volume labelled with this
# run's WHAGO_INSTANCE, before (leftovers of an interrupted run) and after the tests.

import contextlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import docker  # noqa: E402
from django.conf import settings  # noqa: E402

from tests.waha.simkit import ROOT  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

SIMULATOR_IMAGE = "whago/waha-simulator:latest"


def run_label() -> str:
    return f"whago.instance={settings.WHAGO_INSTANCE}"


def remove_run_containers() -> None:
    """Every Swarm service, container and volume of this test run (label whago.instance) removed."""
    if not settings.WHAGO_INSTANCE.startswith("test-"):
        return  # never touch a real deployment's containers
    client = docker.from_env()
    try:
        if (client.info().get("Swarm") or {}).get("ControlAvailable"):
            # Services first: Swarm would start their removed containers again.
            services = client.services.list(filters={"label": run_label()})
            for service in services:
                service.remove()
            # Swarm removes their containers itself (removing them here too, at the same time, can
            # leave a container locked in the engine); until their tasks leave the swarm, Swarm
            # holds their ports on the node.
            removed, deadline = {service.id for service in services}, time.monotonic() + 30
            while removed and time.monotonic() < deadline and (
                any(task.get("ServiceID") in removed for task in client.api.tasks())
                or client.api.containers(all=True, filters={"label": [run_label(), "com.docker.swarm.service.id"]})
            ):
                time.sleep(0.2)
        deadline = time.monotonic() + 30
        while containers := client.containers.list(all=True, filters={"label": run_label()}, ignore_removed=True):
            for container in containers:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True)
            if time.monotonic() > deadline:
                raise AssertionError(f"containers of this run not removed: {[c.name for c in containers]}")
        for volume in client.volumes.list(filters={"label": run_label()}):
            volume.remove(force=True)
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _leave_no_waha_containers():
    remove_run_containers()
    yield
    remove_run_containers()


def waha_info(session) -> dict:
    """What WAHA itself says of a session now, through its public API (GET /api/sessions/{name})."""
    from waha import manager

    return manager.client_for(session.container).get_session(session.remote_name)


wait_for = wait_until  # the name the waha tests use


@pytest.fixture(scope="session")
def docker_client():
    if not settings.WHAGO_INSTANCE.startswith("test-"):
        pytest.fail("Run the waha tests through scripts/test.sh (WHAGO_INSTANCE must be test-<run>).")
    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def simulator_image(docker_client):
    """The locally built simulator image (built once when missing, no registry)."""
    try:
        docker_client.images.get(SIMULATOR_IMAGE)
    except docker.errors.ImageNotFound:
        build = subprocess.run(
            [sys.executable, "-m", "waha.simulator.image"], cwd=ROOT, capture_output=True, text=True
        )
        if build.returncode != 0:
            pytest.fail(f"could not build {SIMULATOR_IMAGE}:\n{build.stdout}\n{build.stderr}")
    return SIMULATOR_IMAGE


@pytest.fixture
def waha_docker(settings, simulator_image):
    """Settings of the docker runtime with host networking and the simulator image."""
    # Containers other test modules of this run left behind would look like orphans here.
    remove_run_containers()
    settings.WAHA_RUNTIME = "docker"
    settings.WAHA_NETWORK_MODE = "host"
    settings.WAHA_IMAGE = simulator_image
    settings.WAHA_ENGINE = "plus"
    settings.WAHA_MEMORY_LIMIT = "256m"
    settings.WAHA_CPU_LIMIT = 1.0
    settings.WAHA_READY_TIMEOUT = 30
    yield settings
    # Rows go with the test's database; their containers and volumes go here.
    remove_run_containers()


@pytest.fixture
def waha_live(waha_docker, live_server):
    """The app served on 127.0.0.1 and containers posting their webhooks to it."""
    url = live_server.url.replace("localhost", "127.0.0.1")
    waha_docker.WAHA_WEBHOOK_URL = f"{url}/api/v1/webhooks/waha"
    return live_server


@pytest.fixture
def make_tenant(transactional_db):
    """A tenant row (transactional tests flush the seeded plans that sign-up needs)."""
    from whago.models import Tenant

    def make(name: str | None = None) -> Tenant:
        n = Tenant.objects.count() + 1
        while Tenant.objects.filter(slug=f"empresa-waha-{n}").exists():
            n += 1
        return Tenant.objects.create(name=name or f"Empresa WAHA {n}", slug=f"empresa-waha-{n}")

    return make



# --- conformance targets: real WAHA Core and the simulator's core-2024.10 profile ---------
from tests.waha.realwaha import real_target, simulator_target, waha_target  # noqa: E402, F401

# --- a real single-node Docker Swarm (runtime swarm) ---------------------------------------
from tests.waha.swarmkit import changes_node, swarm, swarm_node, waha_swarm  # noqa: E402, F401
