"""`python manage.py healthcheck web|worker|beat`: the container health checks of docker-compose.yml.

- web: GET /healthz of the gunicorn in this container (the database answers), with a Host
  header ALLOWED_HOSTS accepts.
- worker: this container's Celery worker answers a ping over the broker (its consumer runs).
- beat: this container's beat process wrote its heartbeat (whago.heartbeats) within
  HEARTBEAT_STALE_SECONDS.
Exit status 0 when healthy, 1 (with the reason) when not.
"""
import json
import socket
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone


def request_host() -> str:
    """A host name ALLOWED_HOSTS accepts (its first concrete entry), for a request from inside."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*":
            return host.lstrip(".") or "localhost"
    return "localhost"


class Command(BaseCommand):
    help = "Health check of this container's web, worker or beat process (exit status 0 when healthy)."
    requires_system_checks = []  # run every few seconds: only the one check asked for

    def add_arguments(self, parser):
        parser.add_argument("role", choices=["web", "worker", "beat"])
        parser.add_argument("--url", default="http://127.0.0.1:8000/healthz", help="web: the /healthz to ask")
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")

    def handle(self, role, url, timeout, **options):
        message = getattr(self, f"check_{role}")(url=url, timeout=timeout)
        self.stdout.write(f"{role}: {message}")

    def check_web(self, url: str, timeout: float) -> str:
        request = urllib.request.Request(url, headers={"Host": request_host()})  # noqa: S310 (http, our own)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CommandError(f"web: {url} answered {exc.code}: {exc.read()[:200]!r}") from exc
        except (OSError, ValueError) as exc:
            raise CommandError(f"web: {url}: {exc}") from exc
        if body.get("status") != "ok":
            raise CommandError(f"web: {url} says {body}")
        return f"ok {body.get('checks')}"

    def check_worker(self, url: str, timeout: float) -> str:
        from whago.celery import app

        name = f"celery@{socket.gethostname()}"
        replies = app.control.ping(destination=[name], timeout=timeout)
        if not any(name in reply for reply in replies):
            raise CommandError(f"worker: {name} did not answer a ping within {timeout:g} s")
        return f"ok {name} answered"

    def check_beat(self, url: str, timeout: float) -> str:
        from whago.models import ProcessHeartbeat

        name = f"beat@{socket.gethostname()}"
        row = ProcessHeartbeat.objects.filter(role=ProcessHeartbeat.Role.BEAT, name=name).first()
        if row is None:
            raise CommandError(f"beat: no heartbeat of {name} yet")
        age = timezone.now() - row.seen_at
        if age > timedelta(seconds=settings.HEARTBEAT_STALE_SECONDS):
            raise CommandError(f"beat: {name} last seen {age.total_seconds():.0f} s ago")
        return f"ok {name} seen {age.total_seconds():.0f} s ago"
