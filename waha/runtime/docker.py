"""The docker runtime: WAHA containers on a real Docker engine, through the docker SDK."""
from __future__ import annotations

import contextlib
from datetime import datetime

import docker
import requests
from django.conf import settings
from docker.errors import DockerException, ImageNotFound, NotFound

from .base import ContainerInfo, ContainerMissing, ContainerSpec, Runtime, RuntimeFailure, Stats

SERVICE_LABEL = "whago.service"
INSTANCE_LABEL = "whago.instance"


# Everything the engine can answer with, and every way it can fail to answer: API errors,
# a dropped or refused connection, a timeout. All of them become RuntimeFailure.
ENGINE_ERRORS = (DockerException, requests.RequestException, OSError)


CPU_PERIOD = 100_000  # microseconds: CPU limits as quota / period, which can be updated later


def memory_bytes(text: str) -> int:
    """Docker-style sizes (512m, 4g) in bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def healthcheck_for(image: str, port: int) -> dict:
    """Docker's health check of a WAHA container: GET /ping (unauthenticated) with what the image has."""
    url = f"http://127.0.0.1:{port}/ping"
    if image.startswith("whago/waha-simulator"):
        probe = ["CMD", "python3", "-c", f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"]
    else:  # WAHA's images run on Node.js
        probe = ["CMD", "node", "-e",
                 f"require('http').get('{url}', r => process.exit(r.statusCode === 200 ? 0 : 1))"
                 ".on('error', () => process.exit(1))"]
    seconds = 1_000_000_000
    return {"test": probe, "interval": 30 * seconds, "timeout": 5 * seconds, "retries": 3,
            "start_period": 30 * seconds}


def volume_name(container_name: str) -> str:
    return f"{container_name}-data"


class DockerRuntime(Runtime):
    """Containers with labels whago.*, a restart policy, limits and a named volume each."""

    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                # Sweeps call the engine from many threads at once: a pool that size.
                self._client = docker.from_env(
                    timeout=settings.WAHA_DOCKER_TIMEOUT, max_pool_size=max(settings.WAHA_SWEEP_THREADS, 10) + 4
                )
            except ENGINE_ERRORS as exc:
                raise RuntimeFailure(f"Docker engine unreachable: {exc}") from exc
        return self._client

    def _filters(self) -> dict:
        return {"label": [f"{SERVICE_LABEL}=waha", f"{INSTANCE_LABEL}={settings.WHAGO_INSTANCE}"]}

    def create(self, spec: ContainerSpec) -> str:
        volume = volume_name(spec.name)
        labels = {**spec.labels, "whago.volume": volume}
        kwargs: dict = {
            "name": spec.name,
            "detach": True,
            "labels": labels,
            "environment": spec.env,
            "restart_policy": {"Name": "unless-stopped"},
            "volumes": {volume: {"bind": spec.data_dir, "mode": "rw"}},
            # Bounded: a runaway container cannot fork without end or fill the disk with logs.
            "pids_limit": settings.WAHA_PIDS_LIMIT,
            "log_config": docker.types.LogConfig(
                type="json-file", config={"max-size": settings.WAHA_LOG_MAX_SIZE, "max-file": "3"}
            ),
            "healthcheck": healthcheck_for(spec.image, spec.port),
        }
        if settings.WAHA_CONTAINER_USER:
            kwargs["user"] = settings.WAHA_CONTAINER_USER
        if spec.memory_limit:
            # No swap beyond the memory limit: a container out of memory is restarted, not slowed down.
            kwargs["mem_limit"] = kwargs["memswap_limit"] = memory_bytes(spec.memory_limit)
        if spec.cpu_limit:
            kwargs["cpu_period"], kwargs["cpu_quota"] = CPU_PERIOD, int(spec.cpu_limit * CPU_PERIOD)
        mode = settings.WAHA_NETWORK_MODE
        if mode == "host":
            kwargs["network_mode"] = "host"
        elif mode == "network":
            kwargs["network"] = settings.WAHA_DOCKER_NETWORK
        else:
            # Published on loopback only: nothing outside this host reaches a container.
            kwargs["ports"] = {f"{spec.port}/tcp": ("127.0.0.1", spec.port)}
        try:
            self.client.volumes.create(name=volume, labels={k: v for k, v in labels.items() if k != "whago.volume"})
            container = self.client.containers.run(spec.image, **kwargs)
        except ImageNotFound as exc:
            raise RuntimeFailure(
                f"Image {spec.image} is not on this Docker engine: build or pull it first ({exc})."
            ) from exc
        except ENGINE_ERRORS as exc:
            if getattr(exc, "status_code", None) != 409:  # 409: the name is someone else's
                # Created but not started (a port taken, a bad limit...): leave nothing behind.
                self._remove_quietly(spec.name)
                with contextlib.suppress(RuntimeFailure):
                    self._remove_volume(volume)
            raise RuntimeFailure(f"Docker could not create {spec.name}: {exc}") from exc
        return container.id

    def _remove_quietly(self, name: str) -> None:
        with contextlib.suppress(*ENGINE_ERRORS):
            self.client.api.remove_container(name, force=True)

    def _call(self, what: str, runtime_id: str, fn, *args, **kwargs):
        try:
            return fn(runtime_id, *args, **kwargs)
        except NotFound as exc:
            raise ContainerMissing(f"No container {runtime_id[:12]} on the Docker engine.") from exc
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not {what} {runtime_id[:12]}: {exc}") from exc

    def start(self, runtime_id: str) -> None:
        self._call("start", runtime_id, self.client.api.start)

    def stop(self, runtime_id: str) -> None:
        self._call("stop", runtime_id, self.client.api.stop, timeout=10)

    def restart(self, runtime_id: str) -> None:
        self._call("restart", runtime_id, self.client.api.restart, timeout=10)

    def resize(self, runtime_id: str, memory_limit: str, cpu_limit: float) -> None:
        limits: dict = {}
        if memory_limit:
            limits["mem_limit"] = limits["memswap_limit"] = memory_bytes(memory_limit)
        if cpu_limit:
            limits.update(cpu_period=CPU_PERIOD, cpu_quota=int(cpu_limit * CPU_PERIOD))
        if limits:
            self._call("resize", runtime_id, self.client.api.update_container, **limits)

    def remove(self, runtime_id: str, volume: bool = False) -> None:
        labels: dict = {}
        try:
            labels = self.client.api.inspect_container(runtime_id)["Config"]["Labels"] or {}
            self.client.api.remove_container(runtime_id, force=True)
        except NotFound:
            pass
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not remove {runtime_id[:12]}: {exc}") from exc
        if volume and labels.get("whago.volume"):
            self._remove_volume(labels["whago.volume"])

    def remove_volume_of(self, name: str) -> None:
        self._remove_volume(volume_name(name))

    def _remove_volume(self, volume: str) -> None:
        try:
            self.client.api.remove_volume(volume, force=True)
        except NotFound:
            pass
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not remove the volume {volume}: {exc}") from exc

    def list_volumes(self) -> list[str]:
        try:
            volumes = self.client.volumes.list(filters=self._filters())
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not list volumes: {exc}") from exc
        return [v.name for v in volumes]

    def logs(self, runtime_id: str, tail: int = 200) -> str:
        raw = self._call("read the logs of", runtime_id, self.client.api.logs, tail=tail, timestamps=True)
        return raw.decode("utf-8", errors="replace")

    def stats(self, runtime_id: str) -> Stats:
        data = self._call("read the stats of", runtime_id, self.client.api.stats, stream=False)
        if not (data.get("memory_stats") or {}).get("usage"):
            raise RuntimeFailure(f"No stats for {runtime_id[:12]}: the container is not running.")
        return stats_from_docker(data)

    def status(self, runtime_id: str) -> str:
        try:
            return self.client.api.inspect_container(runtime_id)["State"]["Status"]
        except NotFound:
            return "missing"
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not inspect {runtime_id[:12]}: {exc}") from exc

    def list(self) -> list[ContainerInfo]:
        try:
            raw = self.client.api.containers(all=True, filters=self._filters())
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not list containers: {exc}") from exc
        return [
            ContainerInfo(
                runtime_id=c["Id"],
                name=(c.get("Names") or ["/"])[0].lstrip("/"),
                status=c.get("State", ""),
                labels=c.get("Labels") or {},
                created_at=datetime.fromtimestamp(c["Created"]).astimezone() if c.get("Created") else None,
            )
            for c in raw
        ]

    def check(self) -> str:
        try:
            version = self.client.version()
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker engine unreachable: {exc}") from exc
        return f"Docker engine {version.get('Version')} (API {version.get('ApiVersion')})"

    def image_present(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except ImageNotFound:
            return False
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(f"Docker could not look up the image {image}: {exc}") from exc
        return True


def stats_from_docker(data: dict) -> Stats:
    """CPU % (over Docker's sampling interval) and memory in use, from one stats answer."""
    cpu, pre = data.get("cpu_stats") or {}, data.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_percent = 100.0 * cpu_delta / system_delta * cpus if cpu_delta > 0 and system_delta > 0 else 0.0
    memory = data.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # Page cache is reclaimable: count what `docker stats` counts.
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    used = max(int(memory.get("usage", 0)) - int(cache or 0), 0)
    return Stats(cpu_percent=round(cpu_percent, 2), memory_bytes=used, memory_limit=int(memory.get("limit", 0)))
