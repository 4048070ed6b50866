import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, cwd=ROOT, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ENV", "SECRET_KEY")}
    full.update(env)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=full, capture_output=True,
                          text=True)


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "a" * 20 + "Production-Secret-Key-With-Enough-Entropy-0123456789",
    "ALLOWED_HOSTS": "whago.example.com",
    "FIELD_ENCRYPTION_KEYS": "zq9dYAl0fDSWi-nZ8QfpY2LGdhmG-7f1dC4s3lJEL3c=",
    "DATABASE_URL": "postgres://whago:whago@127.0.0.1:5432/whago",
}


def test_production_profile_passes_check_deploy_without_warnings(tmp_path):
    # As the image does: static files collected with the production storage first (the deploy
    # check refuses a missing manifest).
    env = {**PRODUCTION, "WHAGO_VAR_DIR": str(tmp_path)}
    collected = run_manage("collectstatic", "--no-input", "-v0", **env)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    env = dict(PRODUCTION)
    del env["SECRET_KEY"]
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_embedded_defaults_need_no_server(tmp_path):
    result = run_manage(
        "shell", "-v", "0", "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEBUG)",
        WHAGO_VAR_DIR=str(tmp_path), CELERY_BROKER_URL="", REDIS_URL="",
    )
    assert result.returncode == 0, result.stderr
    # DEBUG off: a 404 is a plain page, not Django's list of every URL.
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://", "False"]


def test_the_embedded_broker_keeps_its_files_in_the_var_directory(tmp_path):
    """Sending a task through the filesystem broker writes under WHAGO_VAR_DIR only, never in the
    directory the command runs from (kombu's defaults are relative to it)."""
    var, elsewhere = tmp_path / "var", tmp_path / "cwd"
    elsewhere.mkdir()
    result = run_manage(
        "shell", "-v", "0", "-c", "from whago.celery import app; app.send_task('whago.noop')",
        cwd=elsewhere, WHAGO_VAR_DIR=str(var), CELERY_BROKER_URL="", REDIS_URL="",
    )
    assert result.returncode == 0, result.stderr
    assert list(elsewhere.iterdir()) == []
    assert list((var / "broker" / "queue").iterdir())  # the task is queued
    assert (var / "broker" / "control" / "celery.exchange").exists()
