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
import json
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
            state = swarm_state(docker_client)
            # Which swarm this kit started: one started after it (an engine restarted) is not its own.
            STARTED.write_text(json.dumps({"cluster": state["Cluster"]["ID"], "gwbridge_existed": gwbridge_before}))
        if state.get("LocalNodeState") != "active" or not state.get("ControlAvailable"):
            pytest.fail(f"this engine is in a swarm it does not manage: {state}")
        me.write_text("")
    try:
        yield state["NodeID"]
    finally:
        with _registry():
            me.unlink(missing_ok=True)
            started = _started()
            current = (swarm_state(docker_client).get("Cluster") or {}).get("ID")
            if started is not None and started.get("cluster") not in (None, current):
                STARTED.unlink()  # that swarm is gone (the engine was reset): this one is someone else's
            elif started is not None and not _users():
                if docker_client.services.list():
                    print("\nswarm left on: services other than this run's are in it")
                else:
                    docker_client.swarm.leave(force=True)
                    if not started.get("gwbridge_existed"):
                        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                            _remove_gwbridge(docker_client)
                    STARTED.unlink()


def _started() -> dict | None:
    """What this kit recorded of the swarm it started, None when it started none."""
    try:
        return json.loads(STARTED.read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # written by an older kit: its swarm, cluster unknown


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


@contextlib.contextmanager
def node_lock(exclusive: bool) -> Iterator[None]:
    """Shared by the swarm tests of every run at once; exclusive for a test that changes the node
    (drained, the other runs' services would go down with it; relabelled, placed elsewhere)."""
    REGISTRY.mkdir(exist_ok=True)
    with (REGISTRY / "node.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def changes_node() -> None:
    """Asked for by a test that drains or relabels the swarm's node: it has the node to itself."""


@pytest.fixture
def swarm_node(request, swarm) -> Iterator[str]:
    """The swarm's node id, for one test (see node_lock)."""
    with node_lock(exclusive="changes_node" in request.fixturenames):
        yield swarm


@pytest.fixture
def waha_swarm(waha_docker, swarm_node):
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

