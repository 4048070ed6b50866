"""The external runtime: WAHA servers that operators run themselves and registered in the
admin (the seeds' option B: one licensed WAHA Plus server for every tenant).

WHAGO does not own their processes: it cannot create, start, stop or read the logs of one.
It places sessions on them, checks their health over HTTP and alerts like for its own
containers; everything else is the operator's.
"""
from __future__ import annotations

from .base import ContainerInfo, ContainerSpec, Runtime, RuntimeFailure, Stats

NOT_OURS = "External WAHA servers are run by their operators: WHAGO cannot {what} them."


class ExternalRuntime(Runtime):
    name = "external"

    def create(self, spec: ContainerSpec) -> str:
        raise RuntimeFailure(NOT_OURS.format(what="create"))

    def start(self, runtime_id: str) -> None:
        raise RuntimeFailure(NOT_OURS.format(what="start"))

    def stop(self, runtime_id: str) -> None:
        raise RuntimeFailure(NOT_OURS.format(what="stop"))

    def restart(self, runtime_id: str) -> None:
        raise RuntimeFailure(NOT_OURS.format(what="restart"))

    def resize(self, runtime_id: str, memory_limit: str, cpu_limit: float) -> None:
        """An external server is sized by its operator."""

    def remove(self, runtime_id: str, volume: bool = False) -> None:
        """Forgetting a registered server leaves the server itself alone."""

    def logs(self, runtime_id: str, tail: int = 200) -> str:
        raise RuntimeFailure(NOT_OURS.format(what="read the logs of"))

    def stats(self, runtime_id: str) -> Stats:
        raise RuntimeFailure(NOT_OURS.format(what="read CPU and memory of"))

    def status(self, runtime_id: str) -> str:
        # Whether it answers is the health sweep's HTTP probe.
        return "running"

    def list(self) -> list[ContainerInfo]:
        return []

    def remove_volume_of(self, name: str) -> None:
        """An external server's data is its operator's."""

    def list_volumes(self) -> list[str]:
        return []

    def check(self) -> str:
        return "external WAHA servers, registered in the admin"
