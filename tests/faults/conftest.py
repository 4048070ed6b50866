"""Fault tests reuse the chips tests' real workers, Docker fixtures and simulator image."""
from tests.chips.conftest import (  # noqa: F401 - fixtures shared with the chips tests
    _leave_no_waha_containers,
    docker_client,
    simulator_image,
    start_worker,
    waha_env,
)
from tests.waha.swarmkit import changes_node, swarm, swarm_node  # noqa: E402, F401 - a real single-node swarm
