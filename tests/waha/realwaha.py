"""Conformance targets: real WAHA Core 2024.10.8 and the simulator's `core-2024.10` profile, behind
one interface, so the same test runs against both (tests/waha/test_conformance.py).

    target.base_url, target.api_key, target.kind            # "real" or "simulator"
    target.call(method, path, json=...)                     # with the key (refuses unsafe starts)
    target.raw(method, path, headers=...)                   # no key at all
    target.start_session(config)                            # PUT + start; config needs a loopback proxy
    target.restart()                                        # SIGTERM, start again (same port, same data)
    target.baseline()                                       # `default` STOPPED with config null

The real server is the session-wide `real_waha` fixture (tests/conftest.py, built from the pack
by tests/waha/realserver.py). Network rule: a started NOWEB session dials WhatsApp, so every call
that can start a session is checked first: the config it starts with must carry a proxy on
127.0.0.1 (a closed port), else AssertionError and nothing is sent.
"""
from __future__ import annotations

import secrets

import pytest
import requests

from tests.waha.realserver import has_loopback_proxy
from tests.waha.simkit import SimulatorProcess, free_port, wait_until

BASELINE = [{"name": "default", "status": "STOPPED", "config": None, "me": None}]


def closed_proxy() -> dict:
    """An HTTP proxy on a loopback port nobody listens on: a session using it never leaves the host."""
    return {"server": f"http://127.0.0.1:{free_port()}"}


class Target:
    """One WAHA server under test."""

    kind = ""
    base_url = ""
    api_key = ""

    def __init__(self) -> None:
        self.http = requests.Session()

    # --- HTTP ------------------------------------------------------------------------

    def raw(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request without any API key."""
        return self.http.request(method, self.base_url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request with the API key; refuses any call that would start a session without a loopback proxy."""
        self._guard(method.upper(), path.split("?")[0].rstrip("/"), kwargs.get("json"))
        headers = {"X-Api-Key": self.api_key, **kwargs.pop("headers", {})}
        return self.raw(method, path, headers=headers, **kwargs)

    def _current(self) -> dict | None:
        response = self.raw("GET", "/api/sessions/default")
        return response.json() if response.status_code == 200 else None

    def _guard(self, method: str, path: str, body) -> None:
        body = body if isinstance(body, dict) else {}
        if method == "POST" and path == "/api/sessions" and body.get("start"):
            config = body.get("config")
        elif method == "POST" and path in ("/api/sessions/default/start", "/api/sessions/default/restart"):
            current = self._current()
            if current is None:
                return  # `default` was deleted: WAHA answers 404 and starts nothing
            config = current.get("config")
        elif method == "PUT" and path == "/api/sessions/default" and (self._current() or {}).get("status") not in (
            None, "STOPPED"
        ):
            config = body.get("config")  # a running session restarts with the new config
        else:
            return
        if not has_loopback_proxy(config):
            raise AssertionError(
                f"{method} {path} would start a session without a proxy on 127.0.0.1 (it would dial WhatsApp)"
            )

    # --- helpers ---------------------------------------------------------------------

    def start_session(self, config: dict) -> requests.Response:
        """Configure `default` and start it (refused without a loopback proxy)."""
        if not has_loopback_proxy(config):
            raise AssertionError("a session must carry a proxy on 127.0.0.1 (it would dial WhatsApp)")
        put = self.call("PUT", "/api/sessions/default", json={"config": config})
        assert put.status_code == 200, put.text
        return self.call("POST", "/api/sessions/default/start")

    def sessions(self) -> list:
        return self.call("GET", "/api/sessions?all=true").json()

    def status(self) -> str | None:
        listed = self.sessions()
        return listed[0]["status"] if listed else None

    def baseline(self) -> None:
        """Bring `default` back to what a fresh server has: STOPPED, config null, nothing running."""
        listed = self.sessions()
        if listed == BASELINE:
            return
        if not listed:  # deleted: only a restart (or a create that starts it) brings `default` back
            self.restart()
        elif listed[0]["status"] != "STOPPED":
            assert self.call("POST", "/api/sessions/default/stop").status_code == 201
        if self.sessions() != BASELINE:
            assert self.call("PUT", "/api/sessions/default", json={"config": None}).status_code == 200
        assert self.sessions() == BASELINE

    def restart(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.http.close()


# Calls that stop a running session (PUT and logout restart it).
STOPPING = {("POST", "/api/sessions/default/stop"), ("POST", "/api/sessions/default/restart"),
            ("POST", "/api/sessions/default/logout"), ("DELETE", "/api/sessions/default"),
            ("PUT", "/api/sessions/default")}


class RealTarget(Target):
    """Real WAHA Core 2024.10.8 (the session-wide `real_waha` server).

    Real Core dies when a NOWEB session is stopped while its engine is connecting: WAHA removes the
    WebSocket's listeners, the refused connection then emits an 'error' nobody handles, and node
    exits (seen here: stop right after start). So before any call that stops a STARTING session,
    the target waits for the engine's next failed attempt (its log line); the next one is 2 s away.
    """

    kind = "real"

    def __init__(self, server) -> None:
        super().__init__()
        self.server = server
        self.base_url = server.url
        self.api_key = server.api_key

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        if (method.upper(), path.split("?")[0].rstrip("/")) in STOPPING:
            self._between_attempts()
        return super().call(method, path, **kwargs)

    def _failed_attempts(self) -> int:
        return self.server.log_path.read_text(errors="replace").count("', reconnecting...")

    def _between_attempts(self) -> None:
        if self.status() != "STARTING":
            return
        before = self._failed_attempts()
        wait_until(lambda: self._failed_attempts() > before, timeout=20, interval=0.01,
                   message="the engine's next connection attempt never failed")

    def restart(self) -> None:
        self._between_attempts()  # SIGTERM stops the running session too
        self.http.close()
        self.server.restart()


class SimulatorTarget(Target):
    """The simulator in its `core-2024.10` profile, as a process on a loopback port with a data dir.

    Its waits are shortened (stop 0.2 s instead of 3 s, status waits 1 s instead of 5 s, start
    retries every 0.5 s instead of 2 s): timings are not what the conformance tests compare.
    """

    kind = "simulator"

    def __init__(self, data_dir) -> None:
        super().__init__()
        self.api_key = "key-" + secrets.token_hex(8)
        self.process = SimulatorProcess(
            data_dir, engine="core", control=False, api_key=self.api_key, profile="core-2024.10",
            extra_args=["--starting-seconds", "0.1", "--status-wait-seconds", "1"],
            env={"WAHA_SIM_STOP_SECONDS": "0.2", "WAHA_SIM_START_RETRY_SECONDS": "0.5"},
        )
        self.process.start()
        self.base_url = self.process.base_url

    def restart(self) -> None:
        self.http.close()
        self.process.restart()

    def close(self) -> None:
        super().close()
        self.process.stop()


@pytest.fixture(scope="session")
def real_target(real_waha):
    """Real WAHA Core behind the Target interface (one server for the whole run)."""
    target = RealTarget(real_waha)
    yield target
    target.close()


@pytest.fixture(scope="session")
def simulator_target(tmp_path_factory):
    """The simulator's core-2024.10 profile behind the Target interface (one process for the run)."""
    target = SimulatorTarget(tmp_path_factory.mktemp("sim-core-2024"))
    yield target
    target.close()


@pytest.fixture(params=["simulator", "real"])
def waha_target(request):
    """Each conformance test runs once on the simulator and once on real WAHA Core, from the baseline."""
    target = request.getfixturevalue(f"{request.param}_target")
    target.baseline()
    yield target
    target.baseline()


__all__ = ["BASELINE", "RealTarget", "SimulatorTarget", "Target", "closed_proxy", "wait_until"]
