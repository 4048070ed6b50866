"""Fixtures of the deployment tests: the application image built from the real Dockerfile on
the local Debian base, and the PostgreSQL and Redis images of the compose test (tests/deploy/images.py)."""
import subprocess
import sys
import time

import pytest

from tests.deploy import images
from tests.deploy.kit import run_name


@pytest.fixture(scope="session")
def app_image():
    """whago-<run>/app:latest, built for this session from the repository's Dockerfile; its tag
    is removed at the end (the base image and the wheelhouse stay, cached by content hash)."""
    tag = f"whago-{run_name()}/app:latest"
    started = time.monotonic()
    images.ensure_base()
    seconds = images.build_app(tag, labels={"whago.test-run": run_name()})
    print(f"\napp image {tag}: built in {seconds:.0f} s ({time.monotonic() - started:.0f} s with the base)",
          file=sys.stderr)
    yield tag
    subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True)


@pytest.fixture(scope="session")
def service_images():
    """{"postgres": image, "redis": image} on the local base (kept between runs, by content hash)."""
    return images.ensure_service_images()


# --- the real single-node Docker Swarm of the swarm tests (tests/waha/swarmkit.py) -------------
from tests.waha.conftest import docker_client  # noqa: E402, F401
from tests.waha.swarmkit import swarm, swarm_node  # noqa: E402, F401
