"""The application image, built from the real Dockerfile, serves the portal in production:
the image's own command (gunicorn), DJANGO_ENV=production, whitenoise serving hashed static
files, `check --deploy` passing, and failing once the static manifest is gone."""
import re
import secrets
import uuid

import pytest
import requests
from cryptography.fernet import Fernet

from tests.deploy.kit import answers, docker, run_name
from tests.waha.simkit import wait_until

pytestmark = pytest.mark.deploy

HASHED = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9]+$")
# What TLS termination in front of gunicorn says (SECURE_PROXY_SSL_HEADER): no redirect to https.
HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.fixture
def production_container(app_image):
    """The image run as it ships (its CMD), production settings, port 8000 published on 127.0.0.1."""
    name = f"whago-{run_name()}-image-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    docker("run", "-d", "--name", name, "--label", f"whago.test-run={run_name()}", "-p", "127.0.0.1::8000",
           *env_args, app_image)
    try:
        # SQLite under /app/var: the schema the pages read.
        docker("exec", name, "python", "manage.py", "migrate", "--no-input", "-v0")
        host_port = docker("port", name, "8000/tcp").stdout.split()[0]
        yield name, f"http://{host_port}"
    finally:
        logs = docker("logs", "--tail", "40", name, check=False)
        print(logs.stdout[-3000:], logs.stderr[-3000:])
        docker("rm", "--force", "--volumes", name, check=False)


def static_refs(html: str) -> set[str]:
    return set(re.findall(r"""["'](/static/[^"'?#]+)""", html))


def test_the_image_serves_the_portal_in_production(production_container):
    name, base = production_container
    wait_until(lambda: answers(f"{base}/healthz"), timeout=60, interval=0.5, message="gunicorn answering /healthz")
    health = requests.get(f"{base}/healthz", timeout=5)  # plain HTTP: probes are exempt from the redirect
    assert health.json() == {"status": "ok", "checks": {"database": "ok"}}

    refs = set()
    for path in ("/", "/login/", "/admin/login/"):
        page = requests.get(base + path, headers=HTTPS, timeout=10)
        assert page.status_code == 200, (path, page.text[:2000])
        found = static_refs(page.text)
        assert found, f"{path} names no static file"
        refs |= found
    assert any(re.fullmatch(r"/static/css/whago\.[0-9a-f]{12}\.css", ref) for ref in refs), refs
    assert all(HASHED.search(ref) for ref in refs), [ref for ref in refs if not HASHED.search(ref)]
    for ref in sorted(refs):
        served = requests.get(base + ref, headers=HTTPS, timeout=10)
        assert served.status_code == 200, ref
        assert served.content, ref
        # whitenoise's answer for a hashed name: cached for ever (DEBUG is off, Django serves none).
        assert "immutable" in served.headers.get("Cache-Control", ""), (ref, served.headers)

    # Production's security settings hold: plain HTTP to a page is sent to https.
    plain = requests.get(f"{base}/login/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")

    logs = docker("logs", name)
    assert "[ERROR]" not in logs.stdout + logs.stderr  # gunicorn started cleanly (its control socket too)

    assert docker("exec", name, "python", "manage.py", "check", "--deploy", "--fail-level", "ERROR").returncode == 0
    # Without the manifest every page would answer 500: check --deploy says so from now on.
    docker("exec", name, "rm", "/app/var/staticfiles/staticfiles.json")
    broken = docker("exec", name, "python", "manage.py", "check", "--deploy", check=False)
    assert broken.returncode != 0
    assert "whago.E001" in broken.stderr
