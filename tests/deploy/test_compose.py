"""The real docker-compose.yml, started with `docker-compose up` on images built here: the
application's from the Dockerfile, PostgreSQL and Redis from Debian's packages (POSTGRES_IMAGE,
REDIS_IMAGE). Migrate runs, web answers on 127.0.0.1, the worker creates a WAHA container (the
simulator image) for a new chip on the stack's WAHA network, beat ticks, the health checks of
web, worker and beat pass; then the documented teardown leaves nothing behind."""
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from tests.deploy.kit import answers, docker, run, run_name
from tests.waha.simkit import wait_until

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_IMAGE = "whago/waha-simulator:latest"
PASSWORD = "Zebra-Cachoeira-2026!"

SIGN_UP = f"""
import json
from django.utils import timezone
from whago import services
user, tenant = services.sign_up(email="owner@compose.test", password={PASSWORD!r}, full_name="Compose Owner",
                                company="Compose Ltda")
services.User.objects.filter(pk=user.pk).update(email_confirmed_at=timezone.now())
# The BUSINESS plan includes the API (what an operator sets in the admin).
from django_scopes import scopes_disabled
from billing.models import Plan, Subscription
with scopes_disabled():
    Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="BUSINESS"),
                                                      status=Subscription.Status.ACTIVE)
_key, raw = services.create_api_key(tenant=tenant, name="compose test", created_by=user)
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


class Stack:
    """One compose project of this run, in a folder of its own with a copy of docker-compose.yml."""

    def __init__(self, folder, images: dict[str, str]):
        self.folder = folder
        self.project = f"whago-{run_name()}"
        self.instance = f"{run_name()}-compose"  # label whago.instance of the WAHA containers it makes
        self.waha_network = f"{self.project}-waha"
        shutil.copy(ROOT / "docker-compose.yml", folder / "docker-compose.yml")
        settings = {
            "DJANGO_ENV": "production",
            "WHAGO_IMAGE": images["app"],
            "POSTGRES_IMAGE": images["postgres"],
            "REDIS_IMAGE": images["redis"],
            "WEB_BIND": "127.0.0.1:",  # a free port on loopback, read back with `docker-compose port`
            "WAHA_DOCKER_NETWORK": self.waha_network,
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
            "WHAGO_INSTANCE": self.instance,
            "HEARTBEAT_SECONDS": "5",
        }
        (folder / ".env").write_text(env_file(settings))

    def compose(self, *args: str, check: bool = True):
        # Only what docker-compose needs: the test's own variables (DJANGO_ENV=test, WAHA_*) must not
        # reach the file's ${…} substitutions, which read the shell before .env.
        env = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}
        return run("docker-compose", "-p", self.project, *args, check=check, cwd=self.folder, env=env)

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert ids, f"no container of {service}"
        return ids[0]

    def state(self, service: str) -> dict:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.container(service)).stdout)

    def logs(self, service: str = "") -> str:
        result = self.compose("logs", "--no-color", "--tail", "60", *([service] if service else []), check=False)
        return result.stdout + result.stderr

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "web", "python", "manage.py", *args).stdout

    def waha_containers(self) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=whago.instance={self.instance}").stdout.split()

    def teardown(self) -> None:
        """docs/deploy.md's removal: stop what makes WAHA containers, remove those (by their label,
        with their volumes), then `docker-compose down -v`."""
        self.compose("stop", "worker", "beat", check=False)
        containers = self.waha_containers()
        if containers:
            docker("rm", "--force", *containers, check=False)
        volumes = docker("volume", "ls", "-q", "--filter", f"label=whago.instance={self.instance}").stdout.split()
        if volumes:
            docker("volume", "rm", "--force", *volumes, check=False)
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "-aq", "--filter", label).stdout.split() + self.waha_containers(),
            "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split() + docker(
                "volume", "ls", "-q", "--filter", f"label=whago.instance={self.instance}").stdout.split(),
            "networks": docker("network", "ls", "-q", "--filter", label).stdout.split() + docker(
                "network", "ls", "-q", "--filter", f"name=^{self.waha_network}$").stdout.split(),
        }


def swarm_node() -> str:
    return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


@pytest.fixture
def stack(tmp_path, app_image, service_images):
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is missing: run scripts/setup.sh all")
    if docker("image", "inspect", SIMULATOR_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{SIMULATOR_IMAGE} is missing: run scripts/setup.sh simulator-image")
    stack = Stack(tmp_path, {"app": app_image, **service_images})
    stack.teardown()  # what an interrupted earlier run left
    node = swarm_node()
    yield stack
    stack.teardown()
    if swarm_node() != node:  # shown with a failure: the likely cause of names that do not resolve
        print("The engine joined or left a swarm during this test (another test run on this engine?): "
              "Docker 20.10 detaches running containers from their bridge networks when it leaves a swarm.")


def healthy(stack: Stack, service: str) -> bool:
    state = stack.state(service)
    assert state["Status"] == "running", f"{service} is {state['Status']}:\n{stack.logs(service)}"
    return state.get("Health", {}).get("Status") == "healthy"


def test_compose_stack_serves_provisions_and_leaves_nothing_behind(stack):
    started = time.monotonic()
    up = stack.compose("up", "--detach", "--no-build", check=False)
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}\n{stack.logs()}"

    # migrate ran to completion before web, worker and beat started.
    migrate = stack.state("migrate")
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0, stack.logs("migrate")

    # Their compose health checks (/healthz, a worker ping, beat's heartbeat) pass.
    for service in ("web", "worker", "beat"):
        wait_until(lambda service=service: healthy(stack, service), timeout=150, interval=1,
                   message=f"{service} healthy:\n{stack.logs(service)}")
    print(f"\nstack healthy {time.monotonic() - started:.0f} s after up")

    host_port = stack.compose("port", "web", "8000").stdout.strip()
    assert host_port.startswith("127.0.0.1:")
    base = f"http://{host_port}"
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "checks": {"database": "ok"}}
    landing = requests.get(f"{base}/", timeout=10)
    assert landing.status_code == 200
    css = re.search(r"/static/css/whago\.[0-9a-f]{12}\.css", landing.text)
    assert css and answers(base + css.group(0))

    # A new chip through the API: the worker creates its WAHA container on the stack's network.
    key = json.loads(stack.manage("shell", "-c", SIGN_UP).strip().splitlines()[-1])["key"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    created = api.post(f"{base}/api/v1/chips/", json={"alias": "Compose"}, timeout=10)
    assert created.status_code == 201, created.text
    chip_id = created.json()["id"]

    waha = wait_until(stack.waha_containers, timeout=90, interval=0.5, message="a WAHA container")
    assert len(waha) == 1
    inspected = json.loads(docker("inspect", waha[0]).stdout)[0]
    assert inspected["Config"]["Image"] == SIMULATOR_IMAGE
    assert stack.waha_network in inspected["NetworkSettings"]["Networks"]

    # WAHA's webhooks reach web by its service name: the chip shows its QR code, which web fetches
    # from the container by its name.
    def chip_status():
        return api.get(f"{base}/api/v1/chips/{chip_id}/", timeout=10).json()["status"]

    wait_until(lambda: chip_status() == "SCAN_QR_CODE", timeout=120, interval=1,
               message=f"the chip waiting for its QR scan:\n{stack.logs('worker')}")
    qr = api.get(f"{base}/api/v1/chips/{chip_id}/qr.png", timeout=10)
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG"), qr.text[:500]

    # beat ticks: it sends the campaign kick (every 10 s) and the worker runs it.
    wait_until(lambda: "Sending due task chips: campaign kick" in stack.logs("beat"), timeout=60, interval=1,
               message="beat sending a periodic task")
    wait_until(lambda: re.search(r"chips\.tasks\.kick_campaigns\[[0-9a-f-]+\] succeeded", stack.logs("worker")),
               timeout=60, interval=1, message="the worker running beat's task")
    print(f"stack checked {time.monotonic() - started:.0f} s after up")

    stack.teardown()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
