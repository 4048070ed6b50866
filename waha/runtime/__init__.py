"""Runtimes of WAHA containers: `docker` (a Docker engine), `swarm` (Docker Swarm services across
nodes), `local` (simulator processes) and `external` (servers operators run and registered in the admin)."""
from functools import cache

from django.conf import settings

from .base import ContainerInfo, ContainerMissing, ContainerSpec, Location, Node, Runtime, RuntimeFailure, Stats

__all__ = ["ContainerInfo", "ContainerMissing", "ContainerSpec", "Location", "Node", "Runtime", "RuntimeFailure",
           "Stats", "get_runtime"]


@cache
def _runtime(name: str) -> Runtime:
    if name == "docker":
        from .docker import DockerRuntime

        return DockerRuntime()
    if name == "swarm":
        from .swarm import SwarmRuntime

        return SwarmRuntime()
    if name == "local":
        from .local import LocalRuntime

        return LocalRuntime()
    if name == "external":
        from .external import ExternalRuntime

        return ExternalRuntime()
    raise RuntimeFailure(f"Unknown WAHA_RUNTIME {name!r}: use docker, swarm, local or external.")


def get_runtime(name: str | None = None) -> Runtime:
    """The runtime named (a container's own runtime), else the one of settings.WAHA_RUNTIME."""
    return _runtime(name or settings.WAHA_RUNTIME)
