"""/healthz (whago/health.py) and `manage.py healthcheck` (the compose health checks)."""
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tests.deploy.kit import answers
from tests.waha.simkit import free_port, wait_until
from whago.models import ProcessHeartbeat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_healthz_answers_json_when_the_database_answers(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}
    assert "no-cache" in response["Cache-Control"]
    assert client.post("/healthz").status_code == 405


@pytest.fixture
def web_without_database(tmp_path):
    """gunicorn serving WHAGO with its database on a port where nothing listens."""
    port, dead = free_port(), free_port()
    env = dict(os.environ, DATABASE_URL=f"postgres://whago:whago@127.0.0.1:{dead}/whago",
               WHAGO_VAR_DIR=str(tmp_path / "var"))
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "whago.wsgi:application", "--bind",
                             f"127.0.0.1:{port}", "--workers", "1", "--no-control-socket"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or answers(f"{url}/login/"), timeout=30, interval=0.2,
                   message="gunicorn answering")
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_healthz_answers_503_when_the_database_is_down(web_without_database):
    response = requests.get(f"{web_without_database}/healthz", timeout=30)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable"}}
    with pytest.raises(CommandError, match="answered 503"):
        call_command("healthcheck", "web", url=f"{web_without_database}/healthz")


@pytest.mark.django_db(transaction=True)
def test_healthcheck_web_passes_against_a_serving_process(live_server, capsys):
    call_command("healthcheck", "web", url=f"{live_server.url}/healthz")
    assert "web: ok" in capsys.readouterr().out


def test_healthcheck_web_fails_when_nothing_listens():
    with pytest.raises(CommandError, match="web: http://127.0.0.1:"):
        call_command("healthcheck", "web", url=f"http://127.0.0.1:{free_port()}/healthz", timeout=2)


def test_healthcheck_beat_reads_this_host_s_beat_heartbeat(db, capsys):
    name = f"beat@{socket.gethostname()}"
    with pytest.raises(CommandError, match="no heartbeat"):
        call_command("healthcheck", "beat")
    now = timezone.now()
    row = ProcessHeartbeat.objects.create(role=ProcessHeartbeat.Role.BEAT, name=name, started_at=now, seen_at=now)
    call_command("healthcheck", "beat")
    assert f"beat: ok {name}" in capsys.readouterr().out
    ProcessHeartbeat.objects.filter(pk=row.pk).update(seen_at=now - timedelta(minutes=10))
    with pytest.raises(CommandError, match="last seen"):
        call_command("healthcheck", "beat")
