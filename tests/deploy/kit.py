"""Helpers of the deployment tests."""
import subprocess

import pytest
import requests
from django.conf import settings


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
    """Whether GET url answers 200 now."""
    try:
        return requests.get(url, timeout=5, **kwargs).status_code == 200
    except requests.ConnectionError:
        return False
