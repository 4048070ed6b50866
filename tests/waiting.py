"""Waiting in tests: poll a condition until a generous, bounded deadline; never sleep a fixed time
and never assert on how long something took.

The deadline only bounds a failure: a passing test goes on as soon as its condition holds. So it
is at least WAIT_SECONDS (120 s, or WHAGO_TEST_WAIT_SECONDS) whatever a caller asks: a machine busy
with other work (a benchmark, another test run) makes things slower, not wrong."""
import os
import time

import pytest

WAIT_SECONDS = float(os.environ.get("WHAGO_TEST_WAIT_SECONDS", "120"))


def deadline(timeout: float | None = None) -> float:
    """The monotonic moment a wait of `timeout` seconds gives up (never sooner than WAIT_SECONDS)."""
    return time.monotonic() + max(timeout or 0.0, WAIT_SECONDS)


def wait_until(predicate, timeout: float | None = None, interval: float = 0.1, message: str = "condition",
               error: type[BaseException] | None = None):
    """Poll predicate() until truthy and return its value; on timeout fail the test (or raise `error`)."""
    give_up = deadline(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > give_up:
            text = f"timed out after {max(timeout or 0.0, WAIT_SECONDS):.0f} s waiting for {message}"
            if error is not None:
                raise error(text)
            pytest.fail(text)
        time.sleep(interval)
