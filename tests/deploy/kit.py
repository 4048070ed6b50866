"""Helpers of the deployment tests."""
import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.conf import settings

from tests.waha.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_name() -> str:
    """test-<run> of scripts/test.sh; the deployment tests touch only what carries it."""
    if not settings.WHAGO_INSTANCE.startswith("test-"):
        pytest.fail("Run the deployment tests through scripts/test.sh (WHAGO_INSTANCE must be test-<run>).")
    return settings.WHAGO_INSTANCE


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """A command's result, the test failing with its output when it exits non-zero and check is set."""
    result = subprocess.run(list(command), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check)


def answers(url: str, **kwargs) -> bool:
    """Whether GET url answers 200 now (a refused connection or a slow answer is "not yet")."""
    try:
        return requests.get(url, timeout=5, **kwargs).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def wait(predicate, timeout: float, what: str, details=lambda: "", interval: float = 1.0):
    """predicate()'s first truthy value, polled until a deadline; on timeout the test fails with
    what was awaited and details() (logs, read then, not before)."""
    try:
        return wait_for(predicate, timeout, interval, what)
    except pytest.fail.Exception as timed_out:
        pytest.fail(f"{timed_out}\n{details()}")


SIMULATOR_IMAGE = "whago/waha-simulator:latest"
PASSWORD = "Zebra-Cachoeira-2026!"

SIGN_UP = f"""
import json
from django.utils import timezone
from whago import services
user, tenant = services.sign_up(email="owner@deploy.test", password={PASSWORD!r}, full_name="Deploy Owner",
                                company="Deploy Ltda")
services.User.objects.filter(pk=user.pk).update(email_confirmed_at=timezone.now())
# The BUSINESS plan includes the API (what an operator sets in the admin).
from django_scopes import scopes_disabled
from billing.models import Plan, Subscription
with scopes_disabled():
    Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="BUSINESS"),
                                                      status=Subscription.Status.ACTIVE)
_key, raw = services.create_api_key(tenant=tenant, name="deploy test", created_by=user)
print(json.dumps({{"key": raw}}))
"""


def env_file(values: dict[str, str]) -> str:
    """.env.example with these values set, the rest as shipped: what docs/deploy.md has operators do."""
    lines, done = [], set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = re.match(r"#?\s*([A-Z][A-Z0-9_]+)=", line)
        if name and name.group(1) in values:
            if name.group(1) not in done:
                lines.append(f"{name.group(1)}={values[name.group(1)]}")
                done.add(name.group(1))
            continue
        lines.append(line)
    lines += [f"{key}={value}" for key, value in values.items() if key not in done]
    return "\n".join(lines) + "\n"


def stack_settings(images: dict[str, str], instance: str, waha_network: str) -> dict[str, str]:
    """The .env of a test deployment of docker-compose.yml: the images built here, fresh secrets,
    WAHA containers (the simulator image) on the stack's WAHA network, labelled `instance`."""
    return {
        "DJANGO_ENV": "production",
        "WHAGO_IMAGE": images["app"],
        "POSTGRES_IMAGE": images["postgres"],
        "REDIS_IMAGE": images["redis"],
        "WAHA_DOCKER_NETWORK": waha_network,
        "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        # "web": the host name WAHA's webhooks use inside the stack.
        "ALLOWED_HOSTS": "127.0.0.1,localhost,web",
        # TLS would end in front of the stack; WAHA posts to web over the stack's network.
        "SECURE_SSL_REDIRECT": "false",
        "SITE_URL": "http://127.0.0.1:8000",
        "WAHA_WEBHOOK_URL": "http://web:8000/api/v1/webhooks/waha",
        "WAHA_IMAGE": SIMULATOR_IMAGE,
        "WAHA_MEMORY_LIMIT": "256m",
        "WAHA_CPU_LIMIT": "0.5",
        "WHAGO_INSTANCE": instance,
        "HEARTBEAT_SECONDS": "5",
    }


def minimal_env() -> dict[str, str]:
    """Only what docker-compose and docker need: the test's own variables (DJANGO_ENV=test, WAHA_*)
    must not reach the file's ${…} substitutions."""
    return {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}


def labelled(kind: str, label: str) -> list[str]:
    """Ids of the containers, volumes, networks, services, secrets or configs carrying label (k=v)."""
    command = {"container": ("ps", "-aq"), "volume": ("volume", "ls", "-q"), "network": ("network", "ls", "-q"),
               "service": ("service", "ls", "-q"), "secret": ("secret", "ls", "-q"),
               "config": ("config", "ls", "-q")}[kind]
    return docker(*command, "--filter", f"label={label}").stdout.split()


def remove_waha_of(instance: str) -> None:
    """The WAHA containers the worker made for `instance`, and their volumes (docs/deploy.md)."""
    containers = labelled("container", f"whago.instance={instance}")
    if containers:
        docker("rm", "--force", *containers, check=False)
    volumes = labelled("volume", f"whago.instance={instance}")
    if volumes:
        docker("volume", "rm", "--force", *volumes, check=False)


def chip_gets_waha_container(base: str, key: str, instance: str, waha_network: str, logs) -> str:
    """A new chip through the API at base: the worker creates its WAHA container (the simulator) on
    the stack's WAHA network, WAHA's webhooks reach web (the chip waits for its QR scan) and web
    fetches the QR code from the container by its name. Returns the container's id."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    created = api.post(f"{base}/api/v1/chips/", json={"alias": "Deploy"}, timeout=10)
    assert created.status_code == 201, created.text
    chip_id = created.json()["id"]

    waha = wait(lambda: labelled("container", f"whago.instance={instance}"), 90, "a WAHA container",
                lambda: logs("worker"), interval=0.5)
    assert len(waha) == 1
    inspected = json.loads(docker("inspect", waha[0]).stdout)[0]
    assert inspected["Config"]["Image"] == SIMULATOR_IMAGE
    assert waha_network in inspected["NetworkSettings"]["Networks"]

    def chip_status():
        return api.get(f"{base}/api/v1/chips/{chip_id}/", timeout=10).json()["status"]

    wait(lambda: chip_status() == "SCAN_QR_CODE", 120, "the chip waiting for its QR scan",
         lambda: logs("worker") + logs("web"))
    qr = api.get(f"{base}/api/v1/chips/{chip_id}/qr.png", timeout=10)
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG"), qr.text[:500]
    return waha[0]


def beat_ticks(logs) -> None:
    """beat sends the campaign kick (every 10 s) and the worker runs it: logs(service) shows both."""
    wait(lambda: "Sending due task chips: campaign kick" in logs("beat"), 60, "beat sending a periodic task",
         lambda: logs("beat"))
    wait(lambda: re.search(r"chips\.tasks\.kick_campaigns\[[0-9a-f-]+\] succeeded", logs("worker")), 60,
         "the worker running beat's task", lambda: logs("worker"))
