"""A Redis server of the test's own, to restart or stop under a real worker (never the shared one).

`fault_broker` points this test process (its Celery publisher and its Django cache) and the
workers it starts at that server, the way docker-compose.yml shares one Redis between the
cache (database 0) and the broker (database 1).
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import ROOT, Worker, worker_env
from tests.waha.simkit import free_port
from whago.celery import app as whago_app


class RedisServer:
    """redis-server on a free loopback port, append-only (a restart keeps its queues, like the
    compose service), in a folder of the test."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        log = (self.folder / "redis.log").open("a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", "", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start:\n{(self.folder / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM, as `docker compose restart redis` does: it writes its append-only file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)  # the outage itself: nothing listens on the port meanwhile
        self.start()
        self.restarts += 1


@dataclass
class FaultBroker:
    server: RedisServer
    app: Celery

    @property
    def broker_url(self) -> str:
        return self.server.url(1)

    @property
    def cache_url(self) -> str:
        return self.server.url(0)

    def worker_env(self, **extra) -> dict:
        """The environment of a worker (or web process) on this server, as in docker-compose.yml."""
        return {"CELERY_BROKER_URL": self.broker_url, "REDIS_URL": self.cache_url, **extra}


@pytest.fixture
def fault_broker(tmp_path, settings):
    """This process publishes its tasks to, and caches in, a Redis server of the test's own."""
    server = RedisServer(tmp_path).start()
    app = Celery(whago_app.main, set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    # Publishing goes through broker_write_url (the CELERY_BROKER_URL variable would win over broker_url).
    app.conf.broker_write_url = server.url(1)
    settings.CACHES = {**settings.CACHES,
                       "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": server.url(0)}}
    # Shared tasks resolve the current app at each call: this one, in the test's thread and in
    # the live server's threads, until the end of the test.
    app.set_current()
    app.set_default()
    try:
        yield FaultBroker(server, app)
    finally:
        whago_app.set_current()
        whago_app.set_default()
        with contextlib.suppress(Exception):
            app.close()
        server.stop()


class Beat(Worker):
    """A real `celery beat` process (the database scheduler) sharing the test database; log() and
    stop() as a worker's."""

    def __init__(self, log_path: Path, env: dict):  # not super().__init__: that starts a worker
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "whago", "beat", "--loglevel=INFO", "--pidfile="],
            cwd=ROOT, env=worker_env(**env), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while "beat: Starting" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"celery beat did not start:\n{self.log()}")
            time.sleep(0.2)
