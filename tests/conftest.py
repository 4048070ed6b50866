"""Fixtures shared by the whole suite: tenants, users, and a real Celery worker process."""
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_scopes import scopes_disabled

from tests import waiting
from whago import services
from whago.models import Membership, Role

ROOT = Path(__file__).resolve().parent.parent
STRONG_PASSWORD = "Zebra-Cachoeira-2026!"
_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty shared cache (throttle counters and cached lookups
    of an earlier test or run must not leak in: database ids repeat across runs)."""
    from django.core.cache import caches

    for alias in settings.CACHES:
        caches[alias].clear()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the site's language: a request made with Accept-Language: en by the test
    client leaves English active in this thread (LocaleMiddleware activates, nothing resets it)."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _no_console_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def confirm_email(user) -> None:
    """As if the user opened the link e-mailed at sign-up (a new company's numbers wait for it)."""
    services.User.objects.filter(pk=user.pk).update(email_confirmed_at=timezone.now())
    user.refresh_from_db()


@pytest.fixture
def make_owner(db):
    """Sign up a new company through the real service; returns (user, tenant)."""

    def make(company: str | None = None, email: str | None = None, confirmed: bool = True):
        n = next(_counter)
        user, tenant = services.sign_up(
            email=email or f"owner{n}@example.com.br",
            password=STRONG_PASSWORD,
            full_name=f"Owner {n}",
            company=company or f"Empresa {n}",
        )
        if confirmed:
            confirm_email(user)
        return user, tenant

    return make


@pytest.fixture
def make_member(db):
    """Add a user with a role to an existing tenant."""

    def make(tenant, role: str = Role.MEMBER, email: str | None = None):
        n = next(_counter)
        user = services.User.objects.create_user(
            email=email or f"member{n}@example.com.br", password=STRONG_PASSWORD, full_name=f"Member {n}"
        )
        with scopes_disabled():
            Membership.objects.create(tenant=tenant, user=user, role=role)
        return user

    return make


@pytest.fixture
def owner_client(client, make_owner):
    """A test client logged in as the owner of a fresh tenant; .tenant and .user set."""
    user, tenant = make_owner()
    client.force_login(user)
    client.user, client.tenant = user, tenant
    return client


def worker_env(**extra) -> dict:
    """The environment for a subprocess that must share this test run's database and broker."""
    db = connection.settings_dict
    env = dict(os.environ)
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}",
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Worker:
    """A real `celery worker` process sharing the test database and broker."""

    def __init__(self, log_path, env: dict, pool: str = "threads", concurrency: int = 4, loglevel: str = "INFO"):
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "whago", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
             f"--loglevel={loglevel}", "--without-gossip", "--without-mingle",
             f"--hostname=chips-{os.getpid()}-{log_path.stem}@%h"],
            cwd=ROOT, env=worker_env(**env), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
            # Its own process group: kill() takes any pool child with it, like a machine dying.
            start_new_session=True,
        )
        give_up = waiting.deadline()
        while "ready." not in self.log() and " ready" not in self.log():
            if self.proc.poll() is not None:
                pytest.fail(f"celery worker exited early:\n{self.log()}")
            if time.monotonic() > give_up:
                self.kill()
                pytest.fail(f"celery worker not ready in {waiting.WAIT_SECONDS:.0f} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no task acknowledgement, like a crashed machine."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()



@pytest.fixture
def celery_worker(request, transactional_db, tmp_path):
    """A real `celery worker` process on the real broker, sharing the test database.

    `@pytest.mark.worker_env(NAME="value")` sets extra environment (settings) for it.
    """
    import redis

    # Tasks left in the broker by an earlier, interrupted run must not leak in.
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    marker = request.node.get_closest_marker("worker_env")
    worker = Worker(tmp_path / "worker.log", dict(marker.kwargs) if marker else {})
    yield worker
    worker.stop()


@pytest.fixture
def operator(db):
    """A staff superuser: the operators' console."""
    return services.User.objects.create_superuser(email="ops@whago.test", password=STRONG_PASSWORD)


@pytest.fixture
def client_factory():
    """Fresh, independent test clients (another browser)."""
    from django.test import Client

    return Client


class Receiver:
    """A real HTTP server on 127.0.0.1 recording POSTs; answers from a programmable list."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float | None = None) -> list[dict]:
        give_up = waiting.deadline(timeout)
        while time.monotonic() < give_up:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    """An HTTP endpoint on loopback that records what it receives."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup, django_db_blocker):
    """At the end of the run, end connections left open to the test database (Playwright's
    greenlets open their own), so the test database can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def real_waha(tmp_path_factory):
    """Real WAHA Core 2024.10.8 on a loopback port for the whole run (tests/waha/realserver.py)."""
    from tests.waha.realserver import RealWaha

    server = RealWaha.start_new(tmp_path_factory.mktemp("real-waha"))
    try:
        yield server
    finally:
        server.stop()
        server.assert_stayed_on_loopback()
