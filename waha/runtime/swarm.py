"""The swarm runtime: each WAHA container is a Docker Swarm service of one replica, pinned to a node.

WHAGO chooses the node (waha.placement: a WAHA node with room, the least used first) and pins the
service to it (constraint node.id): the container's named volume lives on that node, so a task
Swarm starts again there (killed, unhealthy, restarted, resized) finds its sessions. When the
node is drained or lost, WHAGO moves the service to another node (waha.placement.relocate_stranded);
the volume does not follow, WAHA Plus's PostgreSQL store does (docs/deploy.md).

The port is published in host mode on the node (or the node's host network is used), and
reserved per node in the database: WHAGO reaches a container at http://<node address>:<port>.
"""
from __future__ import annotations

import contextlib
import time

import docker
from django.conf import settings
from django.utils.dateparse import parse_datetime
from docker.errors import NotFound

from .base import ContainerInfo, ContainerMissing, ContainerSpec, Location, Node, RuntimeFailure, Stats
from .docker import ENGINE_ERRORS, DockerRuntime, healthcheck_for, memory_bytes, volume_name

SECOND = 1_000_000_000
# A task whose container runs; "starting": its health check has not passed yet (WHAGO pings it itself).
RUNNING = {"running", "starting"}
# What Swarm wants of a task that is the service's current one (it is "ready" while not yet placed).
CURRENT = {"ready", "running"}
# Seconds the node id of this engine is trusted (it changes only if the engine leaves the swarm).
LOCAL_NODE_TTL = 30.0


def resources_for(memory_limit: str, cpu_limit: float) -> docker.types.Resources:
    """Limits (memory, CPUs, processes) and the memory reserved on the node, which Swarm's
    scheduler counts: a node never takes more than its memory."""
    memory = memory_bytes(memory_limit) if memory_limit else None
    reserved = int(memory * settings.WAHA_SWARM_MEMORY_RESERVATION) if memory else None
    resources = docker.types.Resources(
        cpu_limit=int(cpu_limit * SECOND) if cpu_limit else None, mem_limit=memory, mem_reservation=reserved or None
    )
    resources.setdefault("Limits", {})["Pids"] = settings.WAHA_PIDS_LIMIT
    return resources


def node_from_swarm(raw: dict, local_id: str = "") -> Node:
    """A Swarm node as WHAGO sees it (its address: WAHA_SWARM_NODE_ADDRESS, else its label
    whago.address, else the address Swarm knows it by)."""
    spec, status = raw.get("Spec") or {}, raw.get("Status") or {}
    labels = spec.get("Labels") or {}
    address = settings.WAHA_SWARM_NODE_ADDRESS or labels.get("whago.address") or status.get("Addr") or ""
    if address in ("", "0.0.0.0") and raw.get("ManagerStatus"):  # noqa: S104 - Swarm's "unknown" for a leader
        address = raw["ManagerStatus"].get("Addr", "").rsplit(":", 1)[0]
    label = settings.WAHA_SWARM_NODE_LABEL
    return Node(
        id=raw["ID"],
        name=(raw.get("Description") or {}).get("Hostname", raw["ID"][:12]),
        address=address,
        state=status.get("State", "unknown"),
        availability=spec.get("Availability", "active"),
        labelled=bool(label) and labels.get(label) == "true",
        memory_bytes=int(((raw.get("Description") or {}).get("Resources") or {}).get("MemoryBytes") or 0),
        local=raw["ID"] == local_id,
    )


def _replicas(service: dict) -> int:
    return int(((service.get("Spec") or {}).get("Mode") or {}).get("Replicated", {}).get("Replicas", 1))


class SwarmRuntime(DockerRuntime):
    """Services labelled whago.*, one replica each, pinned to a node, limits, a volume each."""

    name = "swarm"

    def __init__(self, client: docker.DockerClient | None = None):
        super().__init__(client)
        self._local: tuple[float, str] = (0.0, "")

    def _engine(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Swarm could not {what}: {exc}") from exc

    def _service(self, runtime_id: str) -> dict:
        try:
            return self.client.api.inspect_service(runtime_id)
        except NotFound as exc:
            raise ContainerMissing(f"No service {runtime_id[:12]} in the swarm.") from exc
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Swarm could not inspect the service {runtime_id[:12]}: {exc}") from exc

    def _tasks(self, runtime_id: str) -> list[dict]:
        return self._engine(f"list the tasks of {runtime_id[:12]}", self.client.api.tasks,
                            filters={"service": runtime_id})

    def _running_task(self, runtime_id: str) -> dict | None:
        for task in self._tasks(runtime_id):
            if task.get("DesiredState") == "running" and task["Status"].get("State") in RUNNING:
                return task
        return None

    def local_node_id(self) -> str:
        """The node of the engine WHAGO talks to (where stats and volumes can be read)."""
        at, node = self._local
        if not node or time.monotonic() - at > LOCAL_NODE_TTL:
            info = self._engine("read the engine's swarm state", self.client.info)
            node = (info.get("Swarm") or {}).get("NodeID", "")
            self._local = (time.monotonic(), node)
        return node

    # --- nodes -----------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        raw = self._engine("list the nodes", self.client.api.nodes)
        local = self.local_node_id()
        return [node_from_swarm(node, local) for node in raw]

    def locate(self, runtime_id: str) -> Location | None:
        task = self._running_task(runtime_id)
        if task is None:
            return None
        return Location(node=task.get("NodeID", ""), since=parse_datetime(task.get("CreatedAt") or ""))

    # --- services --------------------------------------------------------------------

    def _pinned_image(self, image: str) -> str:
        """The image by digest (a registry's image) or by id (built here): every task runs the very
        image WHAGO was given, and a node that has it starts it without asking a registry."""
        try:
            found = self.client.api.inspect_image(image)
        except NotFound:
            return image  # not on this engine: each node pulls it
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not look up the image {image}: {exc}") from exc
        repository = image.split("@")[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]  # without its tag
        digests = found.get("RepoDigests") or []
        return next((d for d in digests if d.split("@")[0].endswith(repository)), found["Id"])

    def _service_spec(self, spec: ContainerSpec) -> dict:
        if not spec.node:
            raise RuntimeFailure(f"{spec.name} has no node: the swarm runtime places a container on a node first.")
        volume = volume_name(spec.name)
        labels = {**spec.labels, "whago.volume": volume, "whago.image": spec.image}
        mode = settings.WAHA_NETWORK_MODE
        container = docker.types.ContainerSpec(
            image=self._pinned_image(spec.image),
            env=spec.env,
            labels=labels,
            user=settings.WAHA_CONTAINER_USER or None,
            mounts=[docker.types.Mount(target=spec.data_dir, source=volume, labels=spec.labels)],
            healthcheck=docker.types.Healthcheck(**healthcheck_for(spec.image, spec.port)),
            stop_grace_period=10 * SECOND,
        )
        networks = {"host": ["host"], "network": [settings.WAHA_DOCKER_NETWORK]}.get(mode)
        task = docker.types.TaskTemplate(
            container,
            resources=resources_for(spec.memory_limit, spec.cpu_limit),
            # Swarm starts a dead or unhealthy container again, on its node (pinned).
            restart_policy=docker.types.RestartPolicy(condition="any", delay=2 * SECOND),
            placement=docker.types.Placement(constraints=[f"node.id == {spec.node}"]),
            # Bounded: a runaway container cannot fill the node's disk with logs.
            log_driver=docker.types.DriverConfig(
                "json-file", {"max-size": settings.WAHA_LOG_MAX_SIZE, "max-file": "3"}
            ),
            networks=networks,
        )
        # Published on the node that runs it (host mode: no routing mesh, the port is the node's).
        endpoint = None if networks else docker.types.EndpointSpec(ports={spec.port: (spec.port, "tcp", "host")})
        return {
            "task_template": task,
            "name": spec.name,
            "labels": labels,
            "mode": docker.types.ServiceMode("replicated", replicas=1),
            # The old task stops before the new one starts: they share the node's port and volume.
            "update_config": docker.types.UpdateConfig(parallelism=1, order="stop-first", failure_action="continue"),
            "endpoint_spec": endpoint,
        }

    def _wait_running(self, runtime_id: str, name: str, before: set[str], timeout: float | None = None) -> None:
        """Until a task not in `before` runs; fails at once when Swarm has no node for it or refused it."""
        deadline = time.monotonic() + (timeout if timeout is not None else settings.WAHA_READY_TIMEOUT)
        pause = 0.05  # a task usually runs within a second: look often at first
        while True:
            fresh = [t for t in self._tasks(runtime_id) if t["ID"] not in before]
            if any(t.get("DesiredState") == "running" and t["Status"].get("State") in RUNNING for t in fresh):
                return
            for task in fresh:
                state, error = task["Status"].get("State"), task["Status"].get("Err", "")
                # A port still held by a task being removed frees itself: wait for it; other reasons
                # (the node drained or down, no memory left) do not.
                if state == "pending" and error and "port already in use" not in error:
                    raise RuntimeFailure(f"Swarm has no node for {name}: {error}")
                if state in ("rejected", "failed"):
                    raise RuntimeFailure(f"Swarm could not start {name}: {error or state}")
            if time.monotonic() >= deadline:
                states = ", ".join(sorted({t["Status"].get("State", "?") for t in fresh})) or "no task"
                raise RuntimeFailure(f"Swarm did not start {name} in time ({states}).")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.5)

    def _update(self, service: dict, **changes) -> None:
        try:
            self.client.api.update_service(
                service["ID"], version=service["Version"]["Index"], fetch_current_spec=True, **changes
            )
        except NotFound as exc:
            raise ContainerMissing(f"No service {service['ID'][:12]} in the swarm.") from exc
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Swarm could not update {service['Spec']['Name']}: {exc}") from exc

    def create(self, spec: ContainerSpec) -> str:
        kwargs = self._service_spec(spec)
        service_id = self._engine(f"create the service {spec.name}", self.client.api.create_service, **kwargs)["ID"]
        try:
            self._wait_running(service_id, spec.name, before=set())
        except RuntimeFailure:
            # Created but not running (no node, a port taken there...): leave nothing behind.
            with contextlib.suppress(RuntimeFailure):
                self.remove(service_id, volume=True)
            raise
        return service_id

    def start(self, runtime_id: str) -> None:
        service = self._service(runtime_id)
        history = {t["ID"] for t in self._tasks(runtime_id) if t.get("DesiredState") not in CURRENT}
        if _replicas(service) != 1:
            self._update(service, mode=docker.types.ServiceMode("replicated", replicas=1))
        self._wait_running(runtime_id, service["Spec"]["Name"], before=history)

    def stop(self, runtime_id: str) -> None:
        service = self._service(runtime_id)
        if _replicas(service) != 0:
            self._update(service, mode=docker.types.ServiceMode("replicated", replicas=0))
        deadline = time.monotonic() + 30
        while any(t["Status"].get("State") in RUNNING for t in self._tasks(runtime_id)):
            if time.monotonic() >= deadline:
                raise RuntimeFailure(f"Swarm did not stop {service['Spec']['Name']} in 30 s.")
            time.sleep(0.2)

    def _replace(self, runtime_id: str, what: str, **template_changes) -> None:
        """Update the task template (a new task replaces the old one, on the same node) and wait for it."""
        service = self._service(runtime_id)
        before = {t["ID"] for t in self._tasks(runtime_id)}
        template = service["Spec"]["TaskTemplate"]
        template.update(template_changes)
        template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
        self._update(service, task_template=template, mode=docker.types.ServiceMode("replicated", replicas=1))
        self._wait_running(runtime_id, f"{service['Spec']['Name']} ({what})", before=before)

    def restart(self, runtime_id: str) -> None:
        self._replace(runtime_id, "restart")

    def resize(self, runtime_id: str, memory_limit: str, cpu_limit: float) -> None:
        """Swarm applies new limits by replacing the task (on the same node): its sessions resume."""
        self._replace(runtime_id, "resize", Resources=resources_for(memory_limit, cpu_limit))

    def move(self, runtime_id: str, spec: ContainerSpec) -> None:
        """Pin the service to spec.node with spec.port; Swarm replaces its task there (not awaited:
        the health sweep starts what follows)."""
        service = self._service(runtime_id)
        kwargs = self._service_spec(spec)
        kwargs.pop("name")
        self._update(service, **kwargs)

    def remove(self, runtime_id: str, volume: bool = False) -> None:
        try:
            service = self.client.api.inspect_service(runtime_id)
            self.client.api.remove_service(runtime_id)
        except NotFound:
            return
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Swarm could not remove the service {runtime_id[:12]}: {exc}") from exc
        # Its tasks leave the swarm asynchronously; until then Swarm holds its port on the node.
        # (Tasks cannot be asked by the id of a removed service: all are listed.)
        self._wait_gone(runtime_id, "tasks", lambda: [t for t in self.client.api.tasks()
                                                       if t.get("ServiceID") == runtime_id])
        name = (service["Spec"].get("Labels") or {}).get("whago.volume")
        if volume and name:
            # The volume is on the service's node; this engine removes it when it is this node's
            # (elsewhere it stays: docs/deploy.md). Its containers go first.
            self._wait_gone(runtime_id, "containers", self.client.api.containers, all=True,
                            filters={"label": f"com.docker.swarm.service.id={runtime_id}"})
            self._remove_volume(name)

    def _wait_gone(self, runtime_id: str, what: str, fn, timeout: float = 30, **kwargs) -> None:
        deadline = time.monotonic() + timeout
        while self._engine(f"list {what}", fn, **kwargs):
            if time.monotonic() >= deadline:
                raise RuntimeFailure(f"The {what} of the service {runtime_id[:12]} were not removed in time.")
            time.sleep(0.2)

    def logs(self, runtime_id: str, tail: int = 200) -> str:
        """The task's container's logs on this node; else the service's, which Swarm gathers from
        the task's node (once its health check passed: a starting task has none there yet)."""
        task = self._running_task(runtime_id)
        if task is not None and task.get("NodeID") == self.local_node_id():
            return super().logs(task["Status"]["ContainerStatus"]["ContainerID"], tail=tail)
        raw = self._call("read the logs of", runtime_id, self.client.api.service_logs,
                         stdout=True, stderr=True, tail=tail, timestamps=True, is_tty=False)
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else "".join(
            part.decode("utf-8", errors="replace") for part in raw)

    def stats(self, runtime_id: str) -> Stats:
        """CPU and memory of the running task's container, when it runs on this engine's node."""
        task = self._running_task(runtime_id)
        if task is None:
            raise RuntimeFailure(f"No stats for {runtime_id[:12]}: the service has no running task.")
        if task.get("NodeID") != self.local_node_id():
            raise RuntimeFailure(
                f"{runtime_id[:12]} runs on node {task.get('NodeID', '?')[:12]}: Docker gives CPU and memory only "
                "on the container's own node, not through the swarm manager."
            )
        return super().stats(task["Status"]["ContainerStatus"]["ContainerID"])

    def status(self, runtime_id: str) -> str:
        """running, exited (scaled to 0: stopped on purpose), restarting (Swarm is starting a task,
        or cannot place one), created (no task yet) or missing."""
        try:
            service = self.client.api.inspect_service(runtime_id)
        except NotFound:
            return "missing"
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Swarm could not inspect the service {runtime_id[:12]}: {exc}") from exc
        if _replicas(service) == 0:
            return "exited"
        states = {t["Status"].get("State") for t in self._tasks(runtime_id) if t.get("DesiredState") in CURRENT}
        if states & RUNNING:
            return "running"
        return "restarting" if states else "created"

    def list(self) -> list[ContainerInfo]:
        services = self._engine("list services", self.client.api.services, filters=self._filters())
        return [
            ContainerInfo(
                runtime_id=service["ID"],
                name=service["Spec"]["Name"],
                status=self.status(service["ID"]),
                labels=service["Spec"].get("Labels") or {},
                created_at=parse_datetime(service.get("CreatedAt") or ""),
            )
            for service in services
        ]

    def check(self) -> str:
        info = self._engine("read the engine's state", self.client.info)
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            raise RuntimeFailure("This Docker engine is not in a swarm: `docker swarm init` first (docs/deploy.md).")
        if not swarm.get("ControlAvailable"):
            raise RuntimeFailure("This Docker engine is a swarm worker: WHAGO's worker needs a manager's engine.")
        return (f"Docker Swarm of {swarm.get('Nodes')} node(s), {swarm.get('Managers')} manager(s); "
                f"engine {info.get('ServerVersion')}")
