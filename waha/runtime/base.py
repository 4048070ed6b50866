"""The interface every runtime implements: a small set of operations on WAHA containers."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


class RuntimeFailure(Exception):
    """A runtime operation failed (the engine refused or is unreachable)."""


class ContainerMissing(RuntimeFailure):
    """The runtime has no container with that id."""


@dataclass
class ContainerSpec:
    """What a runtime needs to create one WAHA container."""

    name: str
    port: int
    env: dict[str, str]
    labels: dict[str, str]
    image: str = ""
    engine: str = "plus"
    api_key: str = ""
    memory_limit: str = ""
    cpu_limit: float = 0.0
    data_dir: str = "/app/.sessions"
    node: str = ""  # multi-host runtimes (swarm): the id of the node the container is pinned to


@dataclass
class ContainerInfo:
    """A container as the runtime sees it."""

    runtime_id: str
    name: str
    status: str  # running | exited | created | restarting | paused | dead | missing
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class Node:
    """A host of a multi-host runtime (a Swarm node) as WHAGO sees it."""

    id: str
    name: str
    address: str  # where WHAGO reaches the ports its containers publish there
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    labelled: bool  # carries the WAHA node label (settings.WAHA_SWARM_NODE_LABEL)
    memory_bytes: int = 0
    local: bool = False  # the node of the engine WHAGO talks to

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.availability == "active"


@dataclass
class Location:
    """Where a container's current instance runs (multi-host runtimes)."""

    node: str
    since: datetime | None = None  # when that instance (a Swarm task) was created


@dataclass
class Stats:
    """Resource use of a container at one moment."""

    cpu_percent: float
    memory_bytes: int
    memory_limit: int

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_bytes / self.memory_limit if self.memory_limit else 0.0


class Runtime:
    """Base class of the runtimes (one subclass per runtime, like payment providers)."""

    name = ""

    def create(self, spec: ContainerSpec) -> str:
        """Create and start a container; returns its runtime id."""
        raise NotImplementedError

    def start(self, runtime_id: str) -> None:
        raise NotImplementedError

    def stop(self, runtime_id: str) -> None:
        raise NotImplementedError

    def restart(self, runtime_id: str) -> None:
        raise NotImplementedError

    def resize(self, runtime_id: str, memory_limit: str, cpu_limit: float) -> None:
        """Apply new memory and CPU limits to a running container (a plan changed)."""
        raise NotImplementedError

    def remove(self, runtime_id: str, volume: bool = False) -> None:
        """Remove the container (gone already is fine); its data volume only when asked."""
        raise NotImplementedError

    def logs(self, runtime_id: str, tail: int = 200) -> str:
        raise NotImplementedError

    def stats(self, runtime_id: str) -> Stats:
        raise NotImplementedError

    def status(self, runtime_id: str) -> str:
        """running, exited, ... or "missing" when the runtime has no such container."""
        raise NotImplementedError

    def list(self) -> list[ContainerInfo]:
        """Every WAHA container of this WHAGO instance (label whago.instance)."""
        raise NotImplementedError

    def remove_volume_of(self, name: str) -> None:
        """Remove the data of a container by its name (after the container is gone)."""
        raise NotImplementedError

    def list_volumes(self) -> list[str]:
        """Names of this instance's data volumes."""
        raise NotImplementedError

    def check(self) -> str:
        """Raise RuntimeFailure when the runtime cannot work; else a one-line description."""
        raise NotImplementedError

    # Multi-host runtimes only (swarm); one host is the default.

    def nodes(self) -> list[Node] | None:
        """The hosts containers may be placed on; None for a single-host runtime."""
        return None

    def locate(self, runtime_id: str) -> Location | None:
        """Where the container's running instance is; None when not known or not running."""
        return None

    def move(self, runtime_id: str, spec: ContainerSpec) -> None:
        """Pin the container to spec.node (and its port there): it starts again on that node."""
        raise RuntimeFailure(f"The {self.name} runtime has one host: containers cannot move.")
