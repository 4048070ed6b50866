"""A real single-node Docker Swarm for the tests of the swarm runtime, left as it was found.

The swarm is started (`docker swarm init --advertise-addr 127.0.0.1`, its control port on
loopback) only when the engine is in none, and left (`docker swarm leave --force`, and the
docker_gwbridge network init made) only by the last test run using it, and only when this kit
started it and no service is left in it. Concurrent test runs register in a folder under the
temporary directory, under a file lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from .conftest import run_label, wait_for

REGISTRY = Path(tempfile.gettempdir()) / "whago-swarm-tests"
STARTED = REGISTRY / "started-by-tests"


@contextlib.contextmanager
def _registry() -> Iterator[None]:
    REGISTRY.mkdir(exist_ok=True)
    with (REGISTRY / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _users() -> list[Path]:
    """The test runs using the swarm now (files of dead processes are dropped)."""
    users = []
    for path in REGISTRY.glob("user-*"):
        if _alive(int(path.name.removeprefix("user-"))):
            users.append(path)
        else:
            path.unlink(missing_ok=True)
    return users


def swarm_state(client: docker.DockerClient) -> dict:
    return client.info().get("Swarm") or {}


@pytest.fixture(scope="session")
def swarm(docker_client) -> Iterator[str]:
    """A single-node swarm on this engine for the session; yields the node id."""
    me = REGISTRY / f"user-{os.getpid()}"
    with _registry():
        state = swarm_state(docker_client)
        if state.get("LocalNodeState") == "inactive":
            gwbridge_before = bool(docker_client.networks.list(names=["docker_gwbridge"]))
            docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            STARTED.write_text("gwbridge-existed" if gwbridge_before else "")
            state = swarm_state(docker_client)
        if state.get("LocalNodeState") != "active" or not state.get("ControlAvailable"):
            pytest.fail(f"this engine is in a swarm it does not manage: {state}")
        me.write_text("")
    try:
        yield state["NodeID"]
    finally:
        with _registry():
            me.unlink(missing_ok=True)
            if not _users() and STARTED.exists():
                if docker_client.services.list():
                    print("\nswarm left on: services other than this run's are in it")
                else:
                    gwbridge_existed = STARTED.read_text() == "gwbridge-existed"
                    docker_client.swarm.leave(force=True)
                    if not gwbridge_existed:
                        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                            _remove_gwbridge(docker_client)
                    STARTED.unlink()


def _remove_gwbridge(client: docker.DockerClient) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            client.networks.get("docker_gwbridge").remove()
            return
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def waha_swarm(waha_docker, swarm):
    """Settings of the swarm runtime (the docker runtime's, then): the simulator image, ports
    published in host mode on the node, reached on 127.0.0.1 (the only node's address here)."""
    waha_docker.WAHA_RUNTIME = "swarm"
    waha_docker.WAHA_NETWORK_MODE = "publish"
    waha_docker.WAHA_SWARM_NODE_ADDRESS = "127.0.0.1"
    return waha_docker


def services_of_run(client: docker.DockerClient, **labels) -> list:
    filters = [run_label(), *(f"{key.replace('_', '.')}={value}" for key, value in labels.items())]
    return client.services.list(filters={"label": filters})


def task_container(client: docker.DockerClient, service_id: str, other_than: str = ""):
    """The container of the service's running task on this node (another than `other_than`)."""
    def running():
        tasks = client.api.tasks(filters={"service": service_id, "desired-state": "running"})
        ids = [t["Status"].get("ContainerStatus", {}).get("ContainerID") for t in tasks
               if t["Status"]["State"] in ("running", "starting")]
        return next((i for i in ids if i and i != other_than), None)

    return client.containers.get(wait_for(running, 30, message=f"a running task of {service_id[:12]}"))


def node_availability(client: docker.DockerClient, node_id: str, availability: str) -> None:
    """`docker node update --availability <availability>` on the node."""
    node = client.nodes.get(node_id)
    spec = node.attrs["Spec"]
    spec["Availability"] = availability
    node.update(spec)

