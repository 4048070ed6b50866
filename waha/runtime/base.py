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


@dataclass
class ContainerInfo:
    """A container as the runtime sees it."""

    runtime_id: str
    name: str
    status: str  # running | exited | created | restarting | paused | dead | missing
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


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
