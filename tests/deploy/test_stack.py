"""The real docker-compose.yml deployed on a real single-node Docker Swarm with
`docker stack deploy` (docs/deploy.md's commands), on images built here (a stack cannot build).

tests/deploy/stack-test.yml publishes web's port in host mode instead of through the routing
mesh, so that the test reaches it on 127.0.0.1; everything else is the file as shipped: the
services on the stack's overlay networks, the worker's WAHA containers (the docker runtime) on
the attachable overlay network WAHA_DOCKER_NETWORK. Migrate completes, web answers, worker and
beat pass their health checks, the deploy: sections are on the services, the worker creates a
WAHA container for a new chip, beat ticks; then `docker stack rm` and the stack's volumes leave nothing.
The swarm is the swarm tests' (tests/waha/swarmkit.py): started when the engine is in none,
shared with concurrent runs, left as found."""
import json
import re
import shutil
import socket
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
HERE = Path(__file__).resolve().parent
SERVICES = ("postgres", "redis", "migrate", "web", "worker", "beat")
GB = 1024**3
SECOND = 1_000_000_000


def free_port() -> int:
    """A TCP port free on every interface now (host-mode ports bind all of them)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


class SwarmStack:
    """One stack of this run, deployed from a folder with docker-compose.yml, the test's override
    and a .env made from .env.example."""

    def __init__(self, folder: Path, images: dict[str, str]):
        self.folder = folder
        # Not the compose test's project name: compose and stack both name volumes <name>_<volume>.
        self.name = f"whago-{run_name()}-stack"
        self.instance = f"{run_name()}-stack"  # label whago.instance of the WAHA containers it makes
        self.waha_network = f"{self.name}-waha"
        self.port = free_port()
        self.service_ids: set[str] = set()
        shutil.copy(ROOT / "docker-compose.yml", folder / "docker-compose.yml")
        shutil.copy(HERE / "stack-test.yml", folder / "stack-test.yml")
        settings = stack_settings(images, self.instance, self.waha_network)
        # The file's 127.0.0.1 means nothing to Swarm (it warns); the override's host mode uses WEB_PORT.
        settings |= {"WEB_BIND": f"127.0.0.1:{self.port}", "WEB_PORT": str(self.port)}
        (folder / ".env").write_text(env_file(settings))

    def deploy(self):
        """docs/deploy.md's command, with the test's override and images that are only local."""
        return run("sh", "-c", "set -a; . ./.env; set +a; docker stack deploy -c docker-compose.yml "
                   f"-c stack-test.yml --resolve-image never {self.name}",
                   check=False, cwd=self.folder, env=minimal_env())

    def spec(self, service: str) -> dict:
        return json.loads(docker("service", "inspect", f"{self.name}_{service}").stdout)[0]["Spec"]

    def tasks(self, service: str) -> list[dict]:
        ids = docker("service", "ps", "-q", "--no-trunc", f"{self.name}_{service}").stdout.split()
        return json.loads(docker("inspect", *ids).stdout) if ids else []

    def running_container(self, service: str) -> str | None:
        for task in self.tasks(service):
            if task["DesiredState"] == "running" and task["Status"]["State"] == "running":
                return task["Status"]["ContainerStatus"]["ContainerID"]
        return None

    def health(self, service: str) -> str | None:
        container = self.running_container(service)
        if not container:
            return None
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container, check=False).stdout or "{}")
        return (state.get("Health") or {}).get("Status")

    def migrated(self) -> bool:
        states = [(t["Status"]["State"], t["Status"].get("ContainerStatus", {}).get("ExitCode"))
                  for t in self.tasks("migrate")]
        assert len(states) < 5 or ("complete", 0) in states, f"migrate failed 5 times: {states}\n{self.logs('migrate')}"
        return ("complete", 0) in states

    def logs(self, service: str) -> str:
        result = docker("service", "logs", "--no-task-ids", "--tail", "60", f"{self.name}_{service}", check=False)
        return f"--- {service}:\n{result.stdout}{result.stderr}"

    def all_logs(self) -> str:
        return "".join(self.logs(service) for service in SERVICES)

    def manage(self, *args: str) -> str:
        return docker("exec", self.running_container("web"), "python", "manage.py", *args).stdout

    def teardown(self) -> None:
        """docs/deploy.md's removal: scale down what makes WAHA containers, remove those (by their
        label, with their volumes), `docker stack rm`, then the stack's volumes once its
        containers are gone (a stack leaves its volumes)."""
        namespace = f"com.docker.stack.namespace={self.name}"
        self.service_ids |= set(labelled("service", namespace))
        if self.service_ids:
            docker("service", "scale", "--detach", f"{self.name}_worker=0", f"{self.name}_beat=0", check=False)
        remove_waha_of(self.instance)
        docker("stack", "rm", self.name, check=False)

        def gone():
            return not (labelled("service", namespace) or self.swarm_tasks() or labelled("container", namespace))

        wait(gone, 120, f"the services, tasks and containers of {self.name} removed", self.describe_leftovers)
        volumes = labelled("volume", namespace)
        if volumes:
            docker("volume", "rm", *volumes)
        wait(lambda: not labelled("network", namespace), 60, f"the networks of {self.name} removed",
             self.describe_leftovers)

    def swarm_tasks(self) -> list[str]:
        """Tasks the swarm still holds for this stack's services."""
        if not self.service_ids:
            return []
        all_tasks = docker("node", "ps", "-q", "--no-trunc", "self", check=False).stdout.split()
        if not all_tasks:
            return []
        inspected = json.loads(docker("inspect", *all_tasks, check=False).stdout or "[]")
        return [task["ID"] for task in inspected if task.get("ServiceID") in self.service_ids]

    def leftovers(self) -> dict[str, list[str]]:
        namespace, waha = f"com.docker.stack.namespace={self.name}", f"whago.instance={self.instance}"
        return {
            "services": labelled("service", namespace),
            "tasks": self.swarm_tasks(),
            "containers": labelled("container", namespace) + labelled("container", waha),
            "networks": labelled("network", namespace) + docker(
                "network", "ls", "-q", "--filter", f"name=^{self.waha_network}$").stdout.split(),
            "volumes": labelled("volume", namespace) + labelled("volume", waha),
            "secrets": labelled("secret", namespace),
            "configs": labelled("config", namespace),
        }

    def describe_leftovers(self) -> str:
        return json.dumps(self.leftovers())


@pytest.fixture
def swarm_stack(tmp_path, app_image, service_images, swarm_node):
    if docker("image", "inspect", SIMULATOR_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{SIMULATOR_IMAGE} is missing: run scripts/setup.sh simulator-image")
    stack = SwarmStack(tmp_path, {"app": app_image, **service_images})
    stack.teardown()  # what an interrupted earlier run left
    yield stack
    stack.teardown()


def limits(spec: dict) -> dict:
    return spec["TaskTemplate"]["Resources"]["Limits"]


def test_stack_deploy_serves_provisions_and_stack_rm_leaves_nothing(swarm_stack):
    stack = swarm_stack
    started = time.monotonic()
    deployed = stack.deploy()
    assert deployed.returncode == 0, f"{deployed.stdout}\n{deployed.stderr}"
    print(f"\n{deployed.stderr.strip()}")  # what Swarm ignores in the file (docs/deploy.md quotes it)
    stack.service_ids = set(labelled("service", f"com.docker.stack.namespace={stack.name}"))
    assert len(stack.service_ids) == len(SERVICES)

    # Migrate runs to completion whatever order Swarm starts the services in.
    wait(stack.migrated, 300, "migrate complete", stack.all_logs)
    print(f"migrated {time.monotonic() - started:.0f} s after deploy")

    # web answers on 127.0.0.1 (its port in host mode on the node), static files with hashed names.
    base = f"http://127.0.0.1:{stack.port}"
    wait(lambda: answers(f"{base}/healthz"), 180, "web's /healthz", stack.all_logs)
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "checks": {"database": "ok"}}
    login = requests.get(f"{base}/login/", timeout=10)
    assert login.status_code == 200
    css = re.search(r"/static/css/whago\.[0-9a-f]{12}\.css", login.text)
    assert css and answers(base + css.group(0))

    # The health checks of the file pass in Swarm's tasks.
    for service in ("web", "worker", "beat"):
        wait(lambda service=service: stack.health(service) == "healthy", 240, f"{service} healthy",
             lambda service=service: stack.logs(service))
    print(f"web, worker and beat healthy {time.monotonic() - started:.0f} s after deploy")
    listed = docker("stack", "services", "--format", "{{.Name}} {{.Replicas}}", stack.name).stdout.split("\n")
    assert sorted(filter(None, listed)) == sorted(
        f"{stack.name}_{service} {'0/1' if service == 'migrate' else '1/1'}" for service in SERVICES)

    # The deploy: sections are on the services.
    specs = {service: stack.spec(service) for service in SERVICES}
    assert {s: specs[s]["Mode"]["Replicated"]["Replicas"] for s in SERVICES} == dict.fromkeys(SERVICES, 1)
    assert {s: limits(specs[s]) for s in SERVICES if s != "migrate"} == {
        "postgres": {"NanoCPUs": 2 * SECOND, "MemoryBytes": 2 * GB},
        "redis": {"NanoCPUs": SECOND, "MemoryBytes": GB},
        "web": {"NanoCPUs": SECOND, "MemoryBytes": GB},
        "worker": {"NanoCPUs": 2 * SECOND, "MemoryBytes": 2 * GB},
        "beat": {"NanoCPUs": SECOND // 2, "MemoryBytes": GB // 2},
    }
    always = {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0, "Window": 60 * SECOND}
    for service in ("postgres", "redis", "web", "worker", "beat"):
        assert specs[service]["TaskTemplate"]["RestartPolicy"] == always, service
    assert specs["migrate"]["TaskTemplate"]["RestartPolicy"] == {
        "Condition": "on-failure", "Delay": 5 * SECOND, "MaxAttempts": 5}
    update = {s: {k: specs[s]["UpdateConfig"].get(k) for k in ("Parallelism", "Order", "FailureAction")}
              for s in ("web", "worker", "beat")}
    assert update == {"web": {"Parallelism": 1, "Order": "start-first", "FailureAction": "rollback"},
                      "worker": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"},
                      "beat": {"Parallelism": 1, "Order": "stop-first", "FailureAction": "pause"}}
    placement = {s: specs[s]["TaskTemplate"].get("Placement", {}).get("Constraints") for s in SERVICES}
    assert placement == {"postgres": ["node.role == manager"], "redis": ["node.role == manager"],
                         "migrate": None, "web": None, "worker": ["node.role == manager"], "beat": None}
    assert specs["web"]["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": stack.port, "PublishMode": "host"}]
    assert specs["worker"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"] == [
        "CMD", "python", "manage.py", "healthcheck", "worker"]

    # A new chip through the API: the worker creates its WAHA container on the attachable overlay
    # network, WAHA's webhooks reach web by its service name, web reaches WAHA by container name.
    key = json.loads(stack.manage("shell", "-c", SIGN_UP).strip().splitlines()[-1])["key"]
    waha = chip_gets_waha_container(base, key, stack.instance, stack.waha_network, stack.logs)
    network = json.loads(docker("network", "inspect", stack.waha_network).stdout)[0]
    assert (network["Driver"], network["Scope"], network["Attachable"]) == ("overlay", "swarm", True)
    assert any(container.startswith(waha) for container in network["Containers"])
    print(f"WAHA container for a new chip {time.monotonic() - started:.0f} s after deploy")

    # beat ticks: it sends the campaign kick (every 10 s) and the worker runs it.
    beat_ticks(stack.logs)

    stack.teardown()
    assert stack.leftovers() == {"services": [], "tasks": [], "containers": [], "networks": [], "volumes": [],
                                 "secrets": [], "configs": []}
    print(f"stack removed {time.monotonic() - started:.0f} s after deploy")
