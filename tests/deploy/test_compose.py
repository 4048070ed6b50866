"""The real docker-compose.yml, started with `docker-compose up` on images built here: the
application's from the Dockerfile, PostgreSQL and Redis from Debian's packages (POSTGRES_IMAGE,
REDIS_IMAGE). Migrate runs, web answers on 127.0.0.1, the worker creates a WAHA container (the
simulator image) for a new chip on the stack's WAHA network, beat ticks, the health checks of
web, worker and beat pass; then the documented teardown leaves nothing behind."""
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.deploy.kit import (
    SIGN_UP,
    SIMULATOR_IMAGE,
    answers,
    beat_ticks,
    chip_gets_waha_container,
    docker,
    env_file,
    labelled,
    minimal_env,
    remove_waha_of,
    run,
    run_name,
    stack_settings,
    wait,
)

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]


class Stack:
    """One compose project of this run, in a folder of its own with a copy of docker-compose.yml."""

    def __init__(self, folder, images: dict[str, str]):
        self.folder = folder
        self.project = f"whago-{run_name()}"
        self.instance = f"{run_name()}-compose"  # label whago.instance of the WAHA containers it makes
        self.waha_network = f"{self.project}-waha"
        shutil.copy(ROOT / "docker-compose.yml", folder / "docker-compose.yml")
        settings = stack_settings(images, self.instance, self.waha_network)
        settings["WEB_BIND"] = "127.0.0.1:"  # a free port on loopback, read back with `docker-compose port`
        (folder / ".env").write_text(env_file(settings))

    def compose(self, *args: str, check: bool = True):
        # ${…} in the file read the shell before .env: only the shell's basics, not the test's settings.
        return run("docker-compose", "-p", self.project, *args, check=check, cwd=self.folder, env=minimal_env())

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

    def teardown(self) -> None:
        """docs/deploy.md's removal: stop what makes WAHA containers, remove those (by their label,
        with their volumes), then `docker-compose down -v`."""
        self.compose("stop", "worker", "beat", check=False)
        remove_waha_of(self.instance)
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    def leftovers(self) -> dict[str, list[str]]:
        project, waha = f"com.docker.compose.project={self.project}", f"whago.instance={self.instance}"
        return {
            "containers": labelled("container", project) + labelled("container", waha),
            "volumes": labelled("volume", project) + labelled("volume", waha),
            "networks": labelled("network", project) + docker(
                "network", "ls", "-q", "--filter", f"name=^{self.waha_network}$").stdout.split(),
        }


def engine_swarm_node() -> str:
    return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


@pytest.fixture
def stack(tmp_path, app_image, service_images):
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is missing: run scripts/setup.sh all")
    if docker("image", "inspect", SIMULATOR_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{SIMULATOR_IMAGE} is missing: run scripts/setup.sh simulator-image")
    stack = Stack(tmp_path, {"app": app_image, **service_images})
    stack.teardown()  # what an interrupted earlier run left
    node = engine_swarm_node()
    yield stack
    stack.teardown()
    if engine_swarm_node() != node:  # shown with a failure: the likely cause of names that do not resolve
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

    # migrate runs to completion (web, worker and beat wait for its migrations).
    wait(lambda: stack.state("migrate")["Status"] == "exited", 180, "migrate", lambda: stack.logs("migrate"))
    assert stack.state("migrate")["ExitCode"] == 0, stack.logs("migrate")

    # Their compose health checks (/healthz, a worker ping, beat's heartbeat) pass.
    for service in ("web", "worker", "beat"):
        wait(lambda service=service: healthy(stack, service), 150, f"{service} healthy",
             lambda service=service: stack.logs(service))
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
    chip_gets_waha_container(base, key, stack.instance, stack.waha_network, stack.logs)

    # beat ticks: it sends the campaign kick (every 10 s) and the worker runs it.
    beat_ticks(stack.logs)
    print(f"stack checked {time.monotonic() - started:.0f} s after up")

    stack.teardown()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
